--
-- guard: an agent's protected statements in a database with
-- ai_agent_safety.require_approval = on are refused before anything changes,
-- with SQLSTATE 42501 and a message, DETAIL and HINT. The same statements are
-- allowed for a non-agent there, and for the agent in a database without
-- require_approval. DROP DATABASE x is decided by x's own settings.
--
-- Each refusal is followed by \echo :SQLSTATE, so the expected output records
-- the error code too.
--
\getenv abs_srcdir PG_ABS_SRCDIR
\set helpers :abs_srcdir '/include/helpers.sql'
\i :helpers
\set regdb :DBNAME
\set su :USER

-- Roles: an agent (fresh credentials) and a human owner. The agent is made a
-- member of the owner's role so that it may drop and alter the owner's
-- objects; it stays an agent (it is still in ai_agent).
DO $$ BEGIN
    EXECUTE format('CREATE ROLE reg_guard_agent LOGIN IN ROLE ai_agent VALID UNTIL %L',
                   now() + interval '1 hour');
END $$;
-- (Agents' DROP DATABASE drops here: the recycle bin has its own test.)
ALTER ROLE reg_guard_agent SET ai_agent_safety.recycle_retention = 0;
CREATE ROLE reg_guard_owner LOGIN;
GRANT reg_guard_owner TO reg_guard_agent;

-- Databases: reg_guard_prod (require_approval, default operations),
-- reg_guard_prod_all (UPDATE and ALTER protected too), reg_guard_dev (no
-- require_approval), and three databases only to be dropped.
CREATE DATABASE reg_guard_prod OWNER reg_guard_owner;
CREATE DATABASE reg_guard_prod_all OWNER reg_guard_owner;
CREATE DATABASE reg_guard_dev OWNER reg_guard_owner;
CREATE DATABASE reg_guard_x_protected OWNER reg_guard_owner;
CREATE DATABASE reg_guard_x_open OWNER reg_guard_owner;
CREATE DATABASE reg_guard_x_open2 OWNER reg_guard_owner;
ALTER DATABASE reg_guard_prod SET ai_agent_safety.require_approval = on;
ALTER DATABASE reg_guard_prod_all SET ai_agent_safety.require_approval = on;
ALTER DATABASE reg_guard_prod_all SET ai_agent_safety.protected_operations = 'DROP, DELETE, TRUNCATE, UPDATE, ALTER';
ALTER DATABASE reg_guard_x_protected SET ai_agent_safety.require_approval = on;

-- The same objects in each of the three working databases, owned by the owner.
\set make_objects 'CREATE EXTENSION ai_agent_safety; SET ROLE reg_guard_owner; CREATE TABLE public.orders (id int PRIMARY KEY, note text); INSERT INTO public.orders SELECT g, $$order $$ || g FROM generate_series(1, 10) g; CREATE TABLE public.customers (id int PRIMARY KEY, name text); INSERT INTO public.customers VALUES (1, $$ann$$), (2, $$bob$$); CREATE SCHEMA scratch; CREATE TABLE scratch.things (id int); CREATE TABLE public.alter_me (id int, note text); RESET ROLE;'
\c reg_guard_prod :su
:make_objects
\c reg_guard_prod_all :su
:make_objects
\c reg_guard_dev :su
:make_objects

--
-- 1. The agent in reg_guard_prod (require_approval = on; DROP, DELETE, TRUNCATE).
--
\c reg_guard_prod reg_guard_agent
SHOW ai_agent_safety.agent_session;
SHOW ai_agent_safety.require_approval;
SHOW ai_agent_safety.protected_operations;
-- Reads and inserts are never refused.
SELECT count(*) FROM orders;
INSERT INTO orders VALUES (11, 'order 11');
-- DELETE
DELETE FROM orders WHERE id = 1;
\echo :SQLSTATE
-- TRUNCATE
TRUNCATE orders;
\echo :SQLSTATE
TRUNCATE ONLY orders, customers;
\echo :SQLSTATE
-- DROP TABLE, also with IF EXISTS and CASCADE
DROP TABLE orders;
\echo :SQLSTATE
DROP TABLE IF EXISTS orders CASCADE;
\echo :SQLSTATE
-- several objects in one statement: each is named, and the hint asks for one
-- statement per token
DROP TABLE orders, customers;
\echo :SQLSTATE
-- DROP SCHEMA ... CASCADE (the token target is written SCHEMA scratch)
DROP SCHEMA scratch CASCADE;
\echo :SQLSTATE
-- DROP DATABASE x is decided by x's settings: refused for a database with
-- require_approval ...
DROP DATABASE reg_guard_x_protected;
\echo :SQLSTATE
DROP DATABASE reg_guard_x_protected WITH (FORCE);
\echo :SQLSTATE
-- ... and allowed, even from this protected database, for one without.
DROP DATABASE reg_guard_x_open;
-- UPDATE and ALTER are not in this database's protected_operations: allowed.
UPDATE orders SET note = 'updated' WHERE id = 2;
ALTER TABLE alter_me DROP COLUMN note;
-- The DELETE hides in a writable CTE, a DO block, a function: still refused.
WITH gone AS (DELETE FROM orders WHERE id = 3 RETURNING id) SELECT count(*) FROM gone;
\echo :SQLSTATE
DO $$ BEGIN EXECUTE 'DELETE FROM orders WHERE id = 4'; END $$;
\echo :SQLSTATE
-- A declared task id is carried into the DETAIL and the suggested request.
SET ai_agent_safety.task_id = 'reg-task-7';
DELETE FROM orders WHERE id = 1;
\echo :SQLSTATE
-- SET ROLE to a human role does not escape; the message says who acts.
SET ROLE reg_guard_owner;
DELETE FROM orders WHERE id = 1;
\echo :SQLSTATE
RESET ROLE;
RESET ai_agent_safety.task_id;
-- The session is still usable after the refusals.
SELECT count(*) FROM orders;

-- Nothing the agent was refused changed anything.
\c reg_guard_prod :su
SELECT count(*) AS orders, count(*) FILTER (WHERE note = 'updated') AS updated FROM orders;
SELECT count(*) AS customers FROM customers;
SELECT to_regclass('scratch.things') IS NOT NULL AS scratch_things_exists;
SELECT datname FROM pg_database WHERE datname LIKE 'reg\_guard\_x\_%' ORDER BY datname;
SELECT attname FROM pg_attribute WHERE attrelid = 'public.alter_me'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;

-- A superuser that takes on the agent role with SET ROLE is judged as the agent.
SET ROLE reg_guard_agent;
DELETE FROM orders WHERE id = 1;
\echo :SQLSTATE
RESET ROLE;

--
-- 2. The agent in reg_guard_prod_all (UPDATE and ALTER protected as well).
--
\c reg_guard_prod_all reg_guard_agent
SHOW ai_agent_safety.protected_operations;
UPDATE orders SET note = 'updated' WHERE id = 2;
\echo :SQLSTATE
INSERT INTO orders VALUES (1, 'again') ON CONFLICT (id) DO UPDATE SET note = excluded.note;
\echo :SQLSTATE
ALTER TABLE alter_me DROP COLUMN note;
\echo :SQLSTATE
ALTER TABLE alter_me ALTER COLUMN note TYPE varchar(10);
\echo :SQLSTATE
ALTER TABLE alter_me RENAME TO altered;
\echo :SQLSTATE
ALTER TABLE alter_me RENAME COLUMN note TO remark;
\echo :SQLSTATE
ALTER TABLE alter_me SET SCHEMA scratch;
\echo :SQLSTATE
-- Adding a column loses nothing: allowed.
ALTER TABLE alter_me ADD COLUMN added int;
-- INSERT ... ON CONFLICT DO UPDATE is refused by its form, even when no row
-- conflicts (id 11 does not exist here); a plain INSERT is allowed.
INSERT INTO orders VALUES (11, 'order 11') ON CONFLICT (id) DO UPDATE SET note = excluded.note;
\echo :SQLSTATE
INSERT INTO orders VALUES (11, 'order 11');
\c reg_guard_prod_all :su
SELECT count(*) AS orders, count(*) FILTER (WHERE note <> 'order ' || id) AS changed FROM orders;
SELECT attname FROM pg_attribute WHERE attrelid = 'public.alter_me'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;

--
-- 3. The agent in reg_guard_dev (no require_approval): the same statements run.
--
\c reg_guard_dev reg_guard_agent
DELETE FROM orders WHERE id = 1;
UPDATE orders SET note = 'updated' WHERE id = 2;
ALTER TABLE alter_me DROP COLUMN note;
TRUNCATE customers;
DROP SCHEMA scratch CASCADE;
DROP TABLE orders, customers;
-- ... except DROP DATABASE of a database that requires approval: x decides.
DROP DATABASE reg_guard_x_protected;
\echo :SQLSTATE
DROP DATABASE reg_guard_x_open2;
\c reg_guard_dev :su
SELECT to_regclass('public.orders') AS orders, to_regclass('public.customers') AS customers,
       to_regnamespace('scratch') AS scratch;
SELECT datname FROM pg_database WHERE datname LIKE 'reg\_guard\_x\_%' ORDER BY datname;

--
-- 4. The human owner (not an agent) in reg_guard_prod: never refused.
--
\c reg_guard_prod reg_guard_owner
SHOW ai_agent_safety.agent_session;
DELETE FROM orders WHERE id = 1;
UPDATE orders SET note = 'owner' WHERE id = 2;
TRUNCATE customers;
DROP SCHEMA scratch CASCADE;
DROP TABLE orders, customers;
DROP DATABASE reg_guard_x_protected;
SELECT to_regclass('public.orders') AS orders, to_regnamespace('scratch') AS scratch;
SELECT count(*) AS reg_guard_x_left FROM pg_database WHERE datname LIKE 'reg\_guard\_x\_%';

-- Clean up.
\c :regdb :su
DROP DATABASE reg_guard_prod WITH (FORCE);
DROP DATABASE reg_guard_prod_all WITH (FORCE);
DROP DATABASE reg_guard_dev WITH (FORCE);
DROP ROLE reg_guard_agent, reg_guard_owner;
