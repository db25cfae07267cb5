--
-- environments: databases carry an environment label, agents a scope
-- (allowed_environments) and a declared task environment. Enforced at login,
-- on writes, and on DROP DATABASE (by the target's label).
--
\getenv abs_srcdir PG_ABS_SRCDIR
\set helpers :abs_srcdir '/include/helpers.sql'
\i :helpers
\set regdb :DBNAME
\set su :USER

DO $$ BEGIN
    EXECUTE format('CREATE ROLE reg_env_dev_only LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '1 hour');
    EXECUTE format('CREATE ROLE reg_env_unscoped LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '1 hour');
    EXECUTE format('CREATE ROLE reg_env_both LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '1 hour');
END $$;
-- (Agents' DROP DATABASE drops here: the recycle bin has its own test.)
ALTER ROLE reg_env_dev_only SET ai_agent_safety.recycle_retention = 0;
ALTER ROLE reg_env_both SET ai_agent_safety.recycle_retention = 0;
CREATE ROLE reg_env_owner;
CREATE ROLE reg_env_human LOGIN;
GRANT reg_env_owner TO reg_env_dev_only, reg_env_both;
ALTER ROLE reg_env_dev_only SET ai_agent_safety.allowed_environments = 'development';
ALTER ROLE reg_env_both SET ai_agent_safety.allowed_environments = 'production, development';
CREATE DATABASE reg_env_prod OWNER reg_env_owner;
CREATE DATABASE reg_env_dev OWNER reg_env_owner;
CREATE DATABASE reg_env_plain OWNER reg_env_owner;
CREATE DATABASE reg_env_prod_victim OWNER reg_env_owner;
CREATE DATABASE reg_env_dev_victim OWNER reg_env_owner;
ALTER DATABASE reg_env_prod SET ai_agent_safety.environment = 'production';
ALTER DATABASE reg_env_prod_victim SET ai_agent_safety.environment = 'production';
ALTER DATABASE reg_env_dev SET ai_agent_safety.environment = 'development';
ALTER DATABASE reg_env_dev_victim SET ai_agent_safety.environment = 'development';
-- Labels are checked when set.
ALTER DATABASE reg_env_plain SET ai_agent_safety.environment = 'production, development';
\echo :SQLSTATE
ALTER DATABASE reg_env_plain SET ai_agent_safety.environment = 'it''s';
\echo :SQLSTATE
ALTER ROLE reg_env_unscoped SET ai_agent_safety.allowed_environments = 'it''s';
\echo :SQLSTATE
\set make_objects 'CREATE EXTENSION ai_agent_safety; SET ROLE reg_env_owner; CREATE TABLE public.orders (id int PRIMARY KEY, note text); INSERT INTO public.orders SELECT g, $$order $$ || g FROM generate_series(1, 10) g; RESET ROLE; GRANT ALL ON SCHEMA public TO reg_env_owner;'
\c reg_env_prod :su
:make_objects
\c reg_env_dev :su
:make_objects

--
-- 1. Login: an agent may enter only databases whose label is in its scope;
-- an agent without a scope only unlabelled databases. Humans go anywhere.
--
\c :regdb :su
SELECT * FROM reg_login('reg_env_dev_only', 'reg_env_prod');
SELECT * FROM reg_login('reg_env_dev_only', 'reg_env_dev');
SELECT * FROM reg_login('reg_env_dev_only', 'reg_env_plain');
SELECT * FROM reg_login('reg_env_unscoped', 'reg_env_dev');
SELECT * FROM reg_login('reg_env_unscoped', 'reg_env_plain');
SELECT * FROM reg_login('reg_env_both', 'reg_env_prod');
SELECT * FROM reg_login('reg_env_human', 'reg_env_prod');

--
-- 2. A declared task environment: writes in a database of another
-- environment are refused, reads are not.
--
\c reg_env_prod reg_env_both
SET ai_agent_safety.task_id = 'cleanup_42';
SET ai_agent_safety.task_environment = 'development';
SELECT count(*) FROM orders;
INSERT INTO orders VALUES (100, 'x');
\echo :SQLSTATE
UPDATE orders SET note = 'y';
\echo :SQLSTATE
DELETE FROM orders;
\echo :SQLSTATE
CREATE TABLE scratch (id int);
\echo :SQLSTATE
-- Without a task id, the refusal says so.
RESET ai_agent_safety.task_id;
DELETE FROM orders WHERE id = 1;
\echo :SQLSTATE
-- The matching task environment writes (this database does not require approval).
SET ai_agent_safety.task_environment = 'production';
INSERT INTO orders VALUES (100, 'x');
-- Task environment labels are checked when set.
SET ai_agent_safety.task_environment = 'dev, prod';
\echo :SQLSTATE
RESET ai_agent_safety.task_environment;
-- In a development database, the development task writes; an unlabelled
-- database is not the task's environment.
\c reg_env_dev reg_env_both
SET ai_agent_safety.task_environment = 'development';
INSERT INTO orders VALUES (100, 'x');
\c reg_env_plain reg_env_both
SET ai_agent_safety.task_environment = 'development';
CREATE TABLE scratch (id int);
\echo :SQLSTATE

--
-- 3. DROP DATABASE x needs x's environment in the agent's scope, and matching
-- the task environment when one is declared.
--
\c reg_env_dev reg_env_dev_only
DROP DATABASE reg_env_prod_victim;
\echo :SQLSTATE
\c reg_env_dev reg_env_both
SET ai_agent_safety.task_id = 'cleanup_42';
SET ai_agent_safety.task_environment = 'development';
DROP DATABASE reg_env_prod_victim;
\echo :SQLSTATE
DROP DATABASE reg_env_prod_victim WITH (FORCE);
\echo :SQLSTATE
DROP DATABASE reg_env_dev_victim;
\c :regdb :su
SELECT datname FROM pg_database WHERE datname LIKE 'reg\_env\_%victim' ORDER BY datname;
-- Only the production task's INSERT reached production.
\c reg_env_prod :su
SELECT count(*) AS orders, max(id) AS max_id FROM orders;
SELECT to_regclass('public.scratch') AS scratch;

-- Clean up.
\c :regdb :su
DROP DATABASE reg_env_prod WITH (FORCE);
DROP DATABASE reg_env_dev WITH (FORCE);
DROP DATABASE reg_env_plain WITH (FORCE);
DROP DATABASE reg_env_prod_victim WITH (FORCE);
DROP ROLE reg_env_dev_only, reg_env_unscoped, reg_env_both, reg_env_owner, reg_env_human;
