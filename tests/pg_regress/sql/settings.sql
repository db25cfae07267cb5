--
-- settings: values are validated when set, and an agent cannot change the
-- settings that restrict it (SET, SET LOCAL, RESET, set_config, ALTER ROLE,
-- ALTER DATABASE, ALTER SYSTEM), so the guard stays on.
--
\getenv abs_srcdir PG_ABS_SRCDIR
\set helpers :abs_srcdir '/include/helpers.sql'
\set regdb :DBNAME
\set su :USER

DO $$ BEGIN
    EXECUTE format('CREATE ROLE reg_set_agent LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '1 hour');
END $$;
CREATE DATABASE reg_set_prod OWNER reg_set_agent;
ALTER DATABASE reg_set_prod SET ai_agent_safety.require_approval = on;
\c reg_set_prod :su
\i :helpers
CREATE EXTENSION ai_agent_safety;
CREATE TABLE orders (id int PRIMARY KEY, note text) ;
INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 10) g;
ALTER TABLE orders OWNER TO reg_set_agent;

--
-- 1. Validation, as a superuser.
--
SHOW ai_agent_safety.protected_operations;
SET ai_agent_safety.protected_operations = 'DROP, EXPLODE';
\echo :SQLSTATE
ALTER DATABASE reg_set_prod SET ai_agent_safety.protected_operations = 'DROP, NUKE';
\echo :SQLSTATE
ALTER ROLE reg_set_agent SET ai_agent_safety.protected_operations = 'DROP,,DELETE';
\echo :SQLSTATE
SET ai_agent_safety.protected_operations = '';
\echo :SQLSTATE
SHOW ai_agent_safety.protected_operations;
-- A valid list is accepted in any case and spacing.
SET ai_agent_safety.protected_operations = 'drop,Delete , TRUNCATE, update, ALTER';
SHOW ai_agent_safety.protected_operations;
RESET ai_agent_safety.protected_operations;
SET ai_agent_safety.mode = 'shadow';
\echo :SQLSTATE
SET ai_agent_safety.audit_level = 'everything';
\echo :SQLSTATE
SET ai_agent_safety.audit_destination = 'syslog';
\echo :SQLSTATE
SET ai_agent_safety.token_ttl = 0;
\echo :SQLSTATE
SET ai_agent_safety.token_ttl = '8d';
\echo :SQLSTATE
SET ai_agent_safety.require_approval = 'maybe';
\echo :SQLSTATE
SET ai_agent_safety.max_credential_lifetime = '1h';
\echo :SQLSTATE
SET ai_agent_safety.agent_session = on;
\echo :SQLSTATE
SET ai_agent_safety.no_such_setting = 1;
\echo :SQLSTATE
SELECT set_config('ai_agent_safety.task_id', repeat('t', 201), false);
\echo :SQLSTATE
SELECT set_config('ai_agent_safety.agent_role', repeat('r', 201), false);
\echo :SQLSTATE
-- The defaults.
SELECT name, setting, unit, context, vartype
  FROM pg_settings WHERE name LIKE 'ai\_agent\_safety.%' ORDER BY name;

--
-- 2. The agent (which owns this database and its table) cannot switch the
-- guard off.
--
\c reg_set_prod reg_set_agent
SHOW ai_agent_safety.require_approval;
SET ai_agent_safety.require_approval = off;
\echo :SQLSTATE
BEGIN;
SET LOCAL ai_agent_safety.require_approval = off;
\echo :SQLSTATE
ROLLBACK;
RESET ai_agent_safety.require_approval;
\echo :SQLSTATE
SELECT set_config('ai_agent_safety.require_approval', 'off', false);
\echo :SQLSTATE
SET ai_agent_safety.protected_operations = 'UPDATE';
\echo :SQLSTATE
SET ai_agent_safety.mode = 'audit';
\echo :SQLSTATE
SET ai_agent_safety.audit_level = 'decisions';
\echo :SQLSTATE
SET ai_agent_safety.audit_destination = 'table';
\echo :SQLSTATE
SET ai_agent_safety.agent_role = 'nobody';
\echo :SQLSTATE
SET ai_agent_safety.token_ttl = '1d';
\echo :SQLSTATE
SET ai_agent_safety.environment = 'development';
\echo :SQLSTATE
SET ai_agent_safety.allowed_environments = 'production';
\echo :SQLSTATE
SET ai_agent_safety.max_credential_lifetime = '30d';
\echo :SQLSTATE
ALTER ROLE reg_set_agent SET ai_agent_safety.require_approval = off;
\echo :SQLSTATE
ALTER ROLE reg_set_agent IN DATABASE reg_set_prod SET ai_agent_safety.mode = 'audit';
\echo :SQLSTATE
ALTER DATABASE reg_set_prod SET ai_agent_safety.require_approval = off;
\echo :SQLSTATE
ALTER DATABASE reg_set_prod RESET ai_agent_safety.require_approval;
\echo :SQLSTATE
-- RESET ALL reaches the guard's settings too (all of them, for an owner
-- given GRANT SET ON PARAMETER): refused for an agent.
ALTER DATABASE reg_set_prod RESET ALL;
ALTER SYSTEM SET ai_agent_safety.require_approval = off;
\echo :SQLSTATE
-- Settings anyone may set are not the guard's: the agent's task.
SET ai_agent_safety.task_id = 'reg-set-1';
SET ai_agent_safety.task_environment = '';
-- Nothing changed: this session and a new one still refuse.
SHOW ai_agent_safety.require_approval;
SHOW ai_agent_safety.mode;
DELETE FROM orders WHERE id = 1;
\echo :SQLSTATE
\c reg_set_prod reg_set_agent
DELETE FROM orders WHERE id = 1;
\echo :SQLSTATE
\c reg_set_prod :su
SELECT count(*) AS orders FROM orders;
SELECT d.datname, s.setconfig
  FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
 WHERE d.datname = 'reg_set_prod' AND s.setrole = 0;

-- Clean up.
\c :regdb :su
DROP DATABASE reg_set_prod WITH (FORCE);
DROP ROLE reg_set_agent;
