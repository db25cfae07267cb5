--
-- preview: what approvers see of a request's statement (its dry run, or
-- what a TRUNCATE or DROP would remove), and what a row cap says when the
-- statement changes more rows than the token allows.
--
\getenv abs_srcdir PG_ABS_SRCDIR
\set helpers :abs_srcdir '/include/helpers.sql'
\set regdb :DBNAME
\set su :USER

DO $$ BEGIN
    EXECUTE format('CREATE ROLE reg_pv_agent LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '1 hour');
END $$;
-- (This test is about previews: the agent's DELETEs are not kept.)
ALTER ROLE reg_pv_agent SET ai_agent_safety.recycle_retention = 0;
CREATE ROLE reg_pv_approver LOGIN IN ROLE ai_agent_approver;
CREATE ROLE reg_pv_owner;
CREATE DATABASE reg_pv_prod OWNER reg_pv_owner;
ALTER DATABASE reg_pv_prod SET ai_agent_safety.require_approval = on;
\c reg_pv_prod :su
\i :helpers
CREATE EXTENSION ai_agent_safety;
SET ROLE reg_pv_owner;
CREATE TABLE orders (id int PRIMARY KEY, note text);
INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 10) g;
CREATE TABLE order_lines (id int PRIMARY KEY, order_id int NOT NULL REFERENCES orders ON DELETE CASCADE);
INSERT INTO order_lines SELECT g, 1 + (g - 1) / 3 FROM generate_series(1, 30) g;
CREATE VIEW open_orders AS SELECT id FROM orders;
GRANT ALL ON orders, order_lines, open_orders TO reg_pv_agent;
RESET ROLE;

--
-- 1. Previews, as the approver reads them.
--
\c reg_pv_prod reg_pv_agent
SELECT request_approval_token('DELETE', 'reg-pv', statement => 'DELETE FROM orders WHERE id <= 2') IS NOT NULL AS requested;
SELECT request_approval_token('TRUNCATE', 'reg-pv', statement => 'TRUNCATE orders CASCADE') IS NOT NULL AS requested;
SELECT request_approval_token('DROP', 'reg-pv', statement => 'DROP TABLE orders CASCADE') IS NOT NULL AS requested;
-- The dry run changed nothing.
SELECT count(*) AS orders FROM orders;
\c reg_pv_prod reg_pv_approver
-- (each table's entry also holds its oid, relid, left out here)
SELECT operation, statement,
       jsonb_pretty((SELECT jsonb_agg(e - 'relid' ORDER BY o) FROM jsonb_array_elements(preview) WITH ORDINALITY AS x(e, o))) AS preview,
       preview_rows, max_rows
  FROM ai_agent_safety.pending_requests ORDER BY requested_at;
\c reg_pv_prod reg_pv_agent
-- A MERGE (requested for its DELETE; one token approves it whole) and an
-- upsert (requested as UPDATE) are dry-run too.
SELECT request_approval_token('DELETE', 'reg-pv', statement =>
    'MERGE INTO orders o USING (SELECT g AS id FROM generate_series(9, 12) g) s ON o.id = s.id
       WHEN MATCHED AND o.id = 10 THEN DELETE
       WHEN MATCHED THEN UPDATE SET note = ''merged''
       WHEN NOT MATCHED THEN INSERT VALUES (s.id, ''new'')') IS NOT NULL AS requested;
SELECT request_approval_token('UPDATE', 'reg-pv', statement =>
    'INSERT INTO orders VALUES (3, ''upserted''), (11, ''new'') ON CONFLICT (id) DO UPDATE SET note = excluded.note') IS NOT NULL AS requested;
\c reg_pv_prod reg_pv_approver
SELECT operation, left(statement, 12) AS statement,
       jsonb_pretty((SELECT jsonb_agg(e - 'relid' ORDER BY o) FROM jsonb_array_elements(preview) WITH ORDINALITY AS x(e, o))) AS preview,
       preview_rows, max_rows
  FROM ai_agent_safety.pending_requests WHERE statement ~ '^(MERGE|INSERT)' ORDER BY requested_at;

--
-- 2. Requests that cannot be previewed or capped as given: each an error,
-- none a token.
--
\c reg_pv_prod reg_pv_agent
SELECT request_approval_token('DELETE', 'reg-pv', statement => 'DELETE FROM orders WHERE id = 1 / (id - id)');
SELECT request_approval_token('TRUNCATE', 'reg-pv', statement => 'TRUNCATE orders');
SELECT request_approval_token('DROP', 'reg-pv', statement => 'DROP TABLE orders');
SELECT request_approval_token('DELETE', 'reg-pv', 'public.orders', max_rows => 0);
SELECT request_approval_token('TRUNCATE', 'reg-pv', statement => 'TRUNCATE orders CASCADE', max_rows => 5);
SELECT request_approval_token('UPDATE', 'reg-pv', statement => 'MERGE INTO orders o USING (SELECT 1 AS id) s ON o.id = s.id WHEN MATCHED THEN DELETE');
SELECT request_approval_token('UPDATE', 'reg-pv', statement => 'INSERT INTO orders VALUES (12, ''x'') ON CONFLICT DO NOTHING');
\c reg_pv_prod :su
SELECT count(*) AS tokens FROM ai_agent_safety.tokens;

--
-- 3. A row cap: the approver lowers it; over it, the statement is refused,
-- nothing changes, the token stays usable.
--
\c reg_pv_prod reg_pv_agent
SELECT request_approval_token('DELETE', 'reg-pv', 'public.orders', max_rows => 5) AS tok \gset
\c reg_pv_prod reg_pv_approver
SELECT * FROM reg_try(format('SELECT ai_agent_safety.grant_approval_token(%L, %L, max_rows => 10)', :'tok', 'more'));
SELECT ai_agent_safety.grant_approval_token(:'tok', 'one order with its lines', max_rows => 4) IS NOT NULL AS granted;
\c reg_pv_prod reg_pv_agent
SET ai_agent_safety.approval_token = :'tok';
SELECT * FROM reg_try('DELETE FROM orders WHERE id <= 2');
SELECT count(*) AS orders, (SELECT count(*) FROM order_lines) AS lines FROM orders;
SELECT status FROM ai_agent_safety.approval_token_status(:'tok');
SELECT * FROM reg_try('DELETE FROM orders WHERE id = 1');
SELECT count(*) AS orders, (SELECT count(*) FROM order_lines) AS lines FROM orders;
SELECT status FROM ai_agent_safety.approval_token_status(:'tok');

-- Clean up.
\c :regdb :su
DROP DATABASE reg_pv_prod WITH (FORCE);
DROP ROLE reg_pv_agent, reg_pv_approver, reg_pv_owner;
