--
-- approval: the approval-token API (request, grant, deny, cancel, status) and
-- what the guard says when a token is presented: valid, pending, denied,
-- cancelled, expired, used, for another operation, another target, another
-- role, malformed, unknown.
--
-- Token ids are random: they are captured with \gset and never printed. Where
-- an error names a token id, a time or a pid, the statement runs through
-- reg_try() (include/helpers.sql), which shows SQLSTATE, message, DETAIL and
-- HINT with those masked as <token>, <time> and <pid>.
--
\getenv abs_srcdir PG_ABS_SRCDIR
\set helpers :abs_srcdir '/include/helpers.sql'
\set regdb :DBNAME
\set su :USER

-- reg_tok_agent and reg_tok_agent2: agents. reg_tok_approver: a human in
-- ai_agent_approver. reg_tok_human: a human who is not an approver.
-- reg_tok_agent_approver: an agent wrongly made an approver too.
DO $$ BEGIN
    EXECUTE format('CREATE ROLE reg_tok_agent LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '1 hour');
    EXECUTE format('CREATE ROLE reg_tok_agent2 LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '1 hour');
    EXECUTE format('CREATE ROLE reg_tok_agent_approver LOGIN IN ROLE ai_agent, ai_agent_approver VALID UNTIL %L', now() + interval '1 hour');
END $$;
-- (Agents' DROP DATABASE drops here: the recycle bin has its own test.)
ALTER ROLE reg_tok_agent SET ai_agent_safety.recycle_retention = 0;
CREATE ROLE reg_tok_approver LOGIN IN ROLE ai_agent_approver;
CREATE ROLE reg_tok_human LOGIN;
CREATE ROLE reg_tok_owner;
GRANT reg_tok_owner TO reg_tok_agent, reg_tok_agent2;
CREATE DATABASE reg_tok_prod OWNER reg_tok_owner;
CREATE DATABASE reg_tok_victim OWNER reg_tok_owner;
ALTER DATABASE reg_tok_prod SET ai_agent_safety.require_approval = on;
ALTER DATABASE reg_tok_victim SET ai_agent_safety.require_approval = on;
\c reg_tok_prod :su
\i :helpers
CREATE EXTENSION ai_agent_safety;
SET ROLE reg_tok_owner;
CREATE TABLE orders (id int PRIMARY KEY, note text);
INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 10) g;
CREATE TABLE customers (id int PRIMARY KEY, name text);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 10) g;
CREATE SCHEMA scratch;
CREATE FUNCTION f(integer) RETURNS integer LANGUAGE sql AS 'SELECT $1';
RESET ROLE;

--
-- 1. Requests, by the agent.
--
\c reg_tok_prod reg_tok_agent
SET ai_agent_safety.task_id = 'reg-tok-1';
SELECT request_approval_token('DELETE', 'reg-tok-1', 'public.orders', 'remove test rows') AS tok_delete \gset
SELECT :'tok_delete' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' AS is_a_uuid;
SELECT status, operation, target, task_id, requested_by, decided_by, comment, expires_at, used_at
  FROM ai_agent_safety.approval_token_status(:'tok_delete');
-- Operation names in any case, also as delete_operation ...; targets written
-- as the agent would write them, resolved now (unqualified names through the
-- search_path); no target means any object in this database.
SELECT request_approval_token('delete_operation', 'reg-tok-1') AS tok_any \gset
SELECT request_approval_token('Drop', 'reg-tok-1', 'orders') AS tok_drop \gset
SELECT request_approval_token('truncate', 'reg-tok-1', 'TABLE customers') AS tok_truncate \gset
SELECT request_approval_token('DROP', 'reg-tok-1', 'DATABASE reg_tok_victim') AS tok_dropdb \gset
SELECT request_approval_token('DROP', 'reg-tok-1', 'schema scratch') AS tok_schema \gset
SELECT request_approval_token('DROP', 'reg-tok-1', 'FUNCTION f(integer)') AS tok_function \gset
SELECT request_approval_token('ALTER_OPERATION', repeat('t', 200), 'public.orders', repeat('r', 2000)) AS tok_long \gset
SELECT s.operation, s.target, length(s.task_id) AS task_id_length, s.status
  FROM unnest(ARRAY[:'tok_any', :'tok_drop', :'tok_truncate', :'tok_dropdb', :'tok_schema', :'tok_function', :'tok_long']::uuid[])
       WITH ORDINALITY AS t(id, n),
       ai_agent_safety.approval_token_status(t.id) AS s
 ORDER BY t.n;

-- Bad requests.
SELECT request_approval_token('EXPLODE', 'reg-tok-1');
\echo :SQLSTATE
SELECT request_approval_token(NULL, 'reg-tok-1');
\echo :SQLSTATE
SELECT request_approval_token('DELETE', NULL);
\echo :SQLSTATE
SELECT request_approval_token('DELETE', '');
\echo :SQLSTATE
SELECT request_approval_token('DELETE', '   ');
\echo :SQLSTATE
SELECT request_approval_token('DELETE', repeat('t', 201));
\echo :SQLSTATE
SELECT request_approval_token('DELETE', 'reg-tok-1', NULL, repeat('r', 2001));
\echo :SQLSTATE
SELECT request_approval_token('DELETE', 'reg-tok-1', repeat('x', 1001));
\echo :SQLSTATE
SELECT request_approval_token('DELETE', 'reg-tok-1', '');
\echo :SQLSTATE
SELECT request_approval_token('DELETE', 'reg-tok-1', 'public.no_such_table');
\echo :SQLSTATE
SELECT request_approval_token('DROP', 'reg-tok-1', 'DATABASE no_such_database');
\echo :SQLSTATE
SELECT request_approval_token('DROP', 'reg-tok-1', 'SCHEMA no_such_schema');
\echo :SQLSTATE
SELECT request_approval_token('DROP', 'reg-tok-1', 'FUNCTION f(text)');
\echo :SQLSTATE

--
-- 2. The agent cannot decide, nor read the tokens table.
--
SELECT ai_agent_safety.grant_approval_token(:'tok_delete');
\echo :SQLSTATE
SELECT ai_agent_safety.deny_approval_token(:'tok_delete', 'no');
\echo :SQLSTATE
SELECT * FROM ai_agent_safety.tokens;
\echo :SQLSTATE
SELECT * FROM ai_agent_safety.pending_requests;
\echo :SQLSTATE
UPDATE ai_agent_safety.tokens SET state = 'granted';
\echo :SQLSTATE

--
-- 3. Presenting a token before it is granted, or one that is not a token.
--
SET ai_agent_safety.approval_token = :'tok_delete';
SELECT * FROM reg_try('DELETE FROM orders WHERE id = 1');
-- A malformed token id is rejected when set ...
SET ai_agent_safety.approval_token = 'not-a-uuid';
\echo :SQLSTATE
SET ai_agent_safety.approval_token = '8c2952f6-081c-488d-b9ff';
\echo :SQLSTATE
-- ... and a well-formed id that is no token is refused when used.
SET ai_agent_safety.approval_token = '00000000-0000-0000-0000-000000000000';
DELETE FROM orders WHERE id = 1;
\echo :SQLSTATE
RESET ai_agent_safety.approval_token;
-- Status questions about tokens that do not exist.
SELECT * FROM ai_agent_safety.approval_token_status('00000000-0000-0000-0000-000000000000');
\echo :SQLSTATE
SELECT * FROM ai_agent_safety.approval_token_status(NULL);
\echo :SQLSTATE

--
-- 4. Who else may decide: not another agent, not an agent that is also an
-- approver, not a human who is no approver, not the requester itself.
--
\c reg_tok_prod reg_tok_agent2
SELECT * FROM reg_try(format('SELECT * FROM ai_agent_safety.approval_token_status(%L)', :'tok_delete'));
SELECT ai_agent_safety.grant_approval_token(:'tok_delete');
\echo :SQLSTATE
SELECT * FROM reg_try(format('SELECT ai_agent_safety.cancel_approval_token(%L)', :'tok_delete'));
\c reg_tok_prod reg_tok_agent_approver
SELECT ai_agent_safety.grant_approval_token(:'tok_delete');
\echo :SQLSTATE
SELECT count(*) AS visible_tokens FROM ai_agent_safety.approval_tokens;
\c reg_tok_prod reg_tok_human
SELECT ai_agent_safety.grant_approval_token(:'tok_delete');
\echo :SQLSTATE
SELECT ai_agent_safety.deny_approval_token(:'tok_delete', 'no');
\echo :SQLSTATE
SELECT ai_agent_safety.cancel_approval_token(:'tok_delete');
\echo :SQLSTATE
SELECT * FROM reg_try(format('SELECT * FROM ai_agent_safety.approval_token_status(%L)', :'tok_delete'));
\c reg_tok_prod reg_tok_approver
SELECT request_approval_token('DELETE', 'approver-own', 'public.orders') AS tok_own \gset
SELECT * FROM reg_try(format('SELECT ai_agent_safety.grant_approval_token(%L)', :'tok_own'));
SELECT * FROM reg_try(format('SELECT ai_agent_safety.deny_approval_token(%L, %L)', :'tok_own', 'no'));

--
-- 5. The approver: bad inputs, then the decisions.
--
SELECT ai_agent_safety.grant_approval_token(NULL);
\echo :SQLSTATE
SELECT ai_agent_safety.grant_approval_token('00000000-0000-0000-0000-000000000000');
\echo :SQLSTATE
SELECT ai_agent_safety.deny_approval_token(:'tok_drop', NULL);
\echo :SQLSTATE
SELECT ai_agent_safety.deny_approval_token(:'tok_drop', ' ');
\echo :SQLSTATE
SELECT ai_agent_safety.grant_approval_token(:'tok_delete', repeat('c', 2001));
\echo :SQLSTATE
SELECT ai_agent_safety.cancel_approval_token(NULL);
\echo :SQLSTATE
SELECT ai_agent_safety.cancel_approval_token('00000000-0000-0000-0000-000000000000');
\echo :SQLSTATE
-- What an approver reads about a pending request.
-- The SQL it is told to run is schema-qualified and typed: no look-alike
-- function in another schema can take the call.
SELECT requested_by, operation, target, task_id, reason, would_allow
  FROM ai_agent_safety.pending_requests WHERE token = :'tok_delete';
SELECT replace(grant_sql, token::text, '<token>') AS grant_sql,
       replace(deny_sql, token::text, '<token>') AS deny_sql
  FROM ai_agent_safety.pending_requests WHERE token = :'tok_delete';
-- Grant, deny; deciding again names the state the token is in.
SELECT ai_agent_safety.grant_approval_token(:'tok_delete', 'ok: test rows only') > now() AS granted_until_later;
SELECT ai_agent_safety.grant_approval_token(:'tok_any') IS NOT NULL AS granted;
SELECT ai_agent_safety.grant_approval_token(:'tok_truncate') IS NOT NULL AS granted;
SELECT ai_agent_safety.grant_approval_token(:'tok_dropdb') IS NOT NULL AS granted;
SELECT ai_agent_safety.deny_approval_token(:'tok_drop', 'not the orders table');
SELECT * FROM reg_try(format('SELECT ai_agent_safety.grant_approval_token(%L)', :'tok_delete'));
SELECT * FROM reg_try(format('SELECT ai_agent_safety.deny_approval_token(%L, %L)', :'tok_delete', 'changed my mind'));
SELECT * FROM reg_try(format('SELECT ai_agent_safety.grant_approval_token(%L)', :'tok_drop'));
SELECT status, decided_by, comment, expires_at IS NOT NULL AS has_expiry
  FROM ai_agent_safety.approval_token_status(:'tok_delete');
SELECT status, decided_by, comment FROM ai_agent_safety.approval_token_status(:'tok_drop');

--
-- 6. The agent presents the tokens.
--
\c reg_tok_prod reg_tok_agent
SET ai_agent_safety.task_id = 'reg-tok-1';
SELECT status FROM ai_agent_safety.approval_token_status(:'tok_delete');
SET ai_agent_safety.approval_token = :'tok_delete';
-- For another operation, another target: refused, and the token stays usable.
SELECT * FROM reg_try('TRUNCATE orders');
SELECT * FROM reg_try('DELETE FROM customers WHERE id = 1');
SELECT status FROM ai_agent_safety.approval_token_status(:'tok_delete');
-- A transaction that rolls back leaves it usable.
BEGIN;
DELETE FROM orders WHERE id = 1;
ROLLBACK;
SELECT status FROM ai_agent_safety.approval_token_status(:'tok_delete');
-- The one statement it covers runs ...
DELETE FROM orders WHERE id = 1;
SELECT status FROM ai_agent_safety.approval_token_status(:'tok_delete');
-- ... and the token is spent, and cleared from the setting (a pooled
-- connection never hands a spent token to its next client) ...
SHOW ai_agent_safety.approval_token;
-- ... presented again, a second statement is refused.
SET ai_agent_safety.approval_token = :'tok_delete';
SELECT * FROM reg_try('DELETE FROM orders WHERE id = 2');
-- Denied: refused.
SET ai_agent_safety.approval_token = :'tok_drop';
SELECT * FROM reg_try('DROP TABLE orders');
-- Pending and then cancelled by the requester: refused.
SELECT ai_agent_safety.cancel_approval_token(:'tok_schema');
SET ai_agent_safety.approval_token = :'tok_schema';
SELECT * FROM reg_try('DROP SCHEMA scratch');
-- A token for any object covers one DELETE on any table of this database.
SET ai_agent_safety.approval_token = :'tok_any';
DELETE FROM customers WHERE id = 10;
-- The token of another role is refused even when granted.
\c reg_tok_prod reg_tok_agent2
SET ai_agent_safety.approval_token = :'tok_truncate';
SELECT * FROM reg_try('TRUNCATE customers');
-- DROP DATABASE x: the token is requested where the agent runs it, with the
-- target DATABASE x; x's own settings asked for it.
\c reg_tok_prod reg_tok_agent
SET ai_agent_safety.approval_token = :'tok_dropdb';
DROP DATABASE reg_tok_victim;
SELECT count(*) AS victim_left FROM pg_database WHERE datname = 'reg_tok_victim';
-- Statuses as the requester sees them.
SELECT s.operation, s.target, s.status
  FROM unnest(ARRAY[:'tok_delete', :'tok_any', :'tok_drop', :'tok_truncate', :'tok_dropdb', :'tok_schema']::uuid[])
       WITH ORDINALITY AS t(id, n),
       ai_agent_safety.approval_token_status(t.id) AS s
 ORDER BY t.n;
-- A used or cancelled token cannot be cancelled.
SELECT * FROM reg_try(format('SELECT ai_agent_safety.cancel_approval_token(%L)', :'tok_delete'));
SELECT * FROM reg_try(format('SELECT ai_agent_safety.cancel_approval_token(%L)', :'tok_schema'));

--
-- 7. Expiry: a token granted with a one-second token_ttl. The test waits until
-- approval_token_status says expired (a condition, not a fixed sleep), then
-- presents it.
--
SELECT request_approval_token('DELETE', 'reg-tok-1', 'public.orders') AS tok_expiring \gset
\c reg_tok_prod :su
SET ai_agent_safety.token_ttl = '1s';
SELECT ai_agent_safety.grant_approval_token(:'tok_expiring') IS NOT NULL AS granted;
SET reg.tok = :'tok_expiring';
DO $$
DECLARE
    waited int := 0;
BEGIN
    WHILE (SELECT status FROM ai_agent_safety.approval_token_status(current_setting('reg.tok')::uuid)) <> 'expired' LOOP
        PERFORM pg_sleep(0.05);
        waited := waited + 1;
        IF waited > 600 THEN
            RAISE EXCEPTION 'token did not expire within 30 s';
        END IF;
    END LOOP;
END $$;
\c reg_tok_prod reg_tok_agent
SET ai_agent_safety.approval_token = :'tok_expiring';
SELECT * FROM reg_try('DELETE FROM orders WHERE id = 3');
SELECT status FROM ai_agent_safety.approval_token_status(:'tok_expiring');

-- Nothing else changed: one order and one customer deleted by the two tokens.
\c reg_tok_prod :su
SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM customers) AS customers,
       to_regnamespace('scratch') IS NOT NULL AS scratch_exists;

-- Clean up.
\c :regdb :su
DROP DATABASE reg_tok_prod WITH (FORCE);
DROP ROLE reg_tok_agent, reg_tok_agent2, reg_tok_agent_approver, reg_tok_approver, reg_tok_human, reg_tok_owner;
