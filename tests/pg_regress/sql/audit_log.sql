-- audit_log: what a person reads when touching the audit log. It is a view
-- over audit_row (one event per row) and audit_batch (many events per row,
-- the writer's); both, and the view, are append-only.
--
\getenv abs_srcdir PG_ABS_SRCDIR
\set helpers :abs_srcdir '/include/helpers.sql'
\i :helpers
\set regdb :DBNAME
\set su :USER

DO $$ BEGIN
    EXECUTE format('CREATE ROLE reg_audit_agent LOGIN IN ROLE ai_agent VALID UNTIL %L',
                   now() + interval '1 hour');
END $$;
CREATE DATABASE reg_audit_db;
\c reg_audit_db :su
CREATE EXTENSION ai_agent_safety;
\i :helpers

-- A superuser may add an event: it goes into audit_row.
INSERT INTO ai_agent_safety.audit_log (ts, source, event, decision, reason)
VALUES (now(), 'guard', 'allowed', 'info', 'added by a superuser');
SELECT source, event, decision, reason FROM ai_agent_safety.audit_log
 WHERE reason = 'added by a superuser';
SELECT count(*) FROM ai_agent_safety.audit_row WHERE reason = 'added by a superuser';
SELECT source, event, reason FROM ai_agent_safety.audit_log_since(now() - interval '1 hour')
 WHERE reason = 'added by a superuser';

-- Nobody rewrites it, a superuser neither.
UPDATE ai_agent_safety.audit_log SET reason = 'nothing happened';
\echo :SQLSTATE
DELETE FROM ai_agent_safety.audit_log;
\echo :SQLSTATE
UPDATE ai_agent_safety.audit_row SET reason = 'nothing happened';
\echo :SQLSTATE
DELETE FROM ai_agent_safety.audit_row;
\echo :SQLSTATE
TRUNCATE ai_agent_safety.audit_row;
\echo :SQLSTATE
TRUNCATE ai_agent_safety.audit_batch;
\echo :SQLSTATE
TRUNCATE ai_agent_safety.audit_log;
\echo :SQLSTATE

-- Bad input.
SELECT * FROM ai_agent_safety.audit_log_since(NULL);
\echo :SQLSTATE
SELECT * FROM ai_agent_safety._audit_events('\x00'::bytea, 1);
\echo :SQLSTATE
SELECT * FROM ai_agent_safety._audit_events(NULL, 1);

-- An agent reads none of it.
\c reg_audit_db reg_audit_agent
SELECT count(*) FROM ai_agent_safety.audit_log;
\echo :SQLSTATE
SELECT count(*) FROM ai_agent_safety.audit_batch;
\echo :SQLSTATE
SELECT count(*) FROM ai_agent_safety.audit_log_since('-infinity');
\echo :SQLSTATE
SELECT count(*) FROM ai_agent_safety._audit_events('\x00'::bytea, 1);
\echo :SQLSTATE

\c :regdb :su
DROP DATABASE reg_audit_db;
DROP ROLE reg_audit_agent;
