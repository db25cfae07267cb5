--
-- hardening: what a person reads when the guard refuses a way around it.
-- Code an agent wrote is judged as the agent's whoever runs it; the API's
-- names are not an agent's to take; an agent's code stays its own; doors
-- out of the guard's reach are closed; destructive built-in calls are
-- classified by what they do.
--
\getenv abs_srcdir PG_ABS_SRCDIR
\set helpers :abs_srcdir '/include/helpers.sql'
\i :helpers
\set regdb :DBNAME
\set su :USER

DO $$ BEGIN
    EXECUTE format('CREATE ROLE reg_hard_agent LOGIN IN ROLE ai_agent VALID UNTIL %L',
                   now() + interval '1 hour');
END $$;
CREATE ROLE reg_hard_owner LOGIN;
CREATE ROLE reg_hard_team NOLOGIN;
GRANT reg_hard_team TO reg_hard_agent;
CREATE DATABASE reg_hard_prod OWNER reg_hard_owner;
ALTER DATABASE reg_hard_prod SET ai_agent_safety.require_approval = on;
\c reg_hard_prod :su
CREATE EXTENSION ai_agent_safety;
GRANT ALL ON SCHEMA public TO reg_hard_agent, reg_hard_team;
SET ROLE reg_hard_owner;
CREATE TABLE public.orders (id int PRIMARY KEY, note text);
INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 10) g;
GRANT ALL ON public.orders TO reg_hard_agent;
RESET ROLE;
CREATE TABLE public.team_ledger (order_id int);
ALTER TABLE public.team_ledger OWNER TO reg_hard_team;

--
-- 1. The agent plants code; the owner's innocent statements run it.
--
\c reg_hard_prod reg_hard_agent
CREATE TABLE public.inbox (x int);
GRANT ALL ON public.inbox TO PUBLIC;
CREATE RULE r AS ON INSERT TO public.inbox DO ALSO DELETE FROM public.orders;
CREATE FUNCTION public.monthly_report() RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN DELETE FROM public.orders; RETURN 1; END $$;
\c reg_hard_prod reg_hard_owner
INSERT INTO public.inbox VALUES (1);
\echo :SQLSTATE
SELECT public.monthly_report();
\echo :SQLSTATE
SELECT count(*) FROM public.orders;

--
-- 2. Names of the API, and handing code over.
--
\c reg_hard_prod reg_hard_agent
CREATE FUNCTION public.grant_approval_token(token text, comment text) RETURNS int LANGUAGE sql AS 'SELECT 1';
\echo :SQLSTATE
CREATE SCHEMA ai_agent_safety;
\echo :SQLSTATE
ALTER FUNCTION public.monthly_report() OWNER TO reg_hard_team;
\echo :SQLSTATE
SET ROLE reg_hard_team;
CREATE FUNCTION public.team_report() RETURNS int LANGUAGE sql AS 'SELECT 1';
\echo :SQLSTATE
RESET ROLE;
CREATE FUNCTION public.quiet() RETURNS int LANGUAGE sql SET ai_agent_safety.require_approval = off AS 'SELECT 1';
\echo :SQLSTATE
-- A foreign key whose action deletes the team's rows: a trigger in all
-- but name. One that only checks is the agent's to add.
ALTER TABLE public.team_ledger ADD FOREIGN KEY (order_id) REFERENCES public.orders ON DELETE CASCADE;
\echo :SQLSTATE
ALTER TABLE public.team_ledger ADD FOREIGN KEY (order_id) REFERENCES public.orders;

--
-- 3. Doors out, and destruction by call.
--
COPY (SELECT 1) TO PROGRAM 'cat';
\echo :SQLSTATE
CREATE TABLE public.scratch (x int);
BEGIN;
INSERT INTO public.scratch VALUES (2);
PREPARE TRANSACTION 'reg_hard_gid';
\echo :SQLSTATE
ROLLBACK;
SELECT lo_from_bytea(4242, 'precious') IS NOT NULL AS made;
SELECT lo_unlink(4242);
\echo :SQLSTATE
SELECT request_approval_token('DROP', 'reg-hard-1', 'ROLE reg_hard_team');
\echo :SQLSTATE

--
-- 4. Statements sent elsewhere: dblink's connections, and Citus's
-- run_command_on_*(), which run text on other nodes as the current role,
-- and its internal functions, which edit which shards a table has, and
-- its functions that drop a table's shards (judged as a DROP) (here a stand-in of the same name, called as Citus's C function is: Citus
-- is not installed; scripts/citus-check runs the real ones). A DBA's call
-- runs; the agent's is refused, also after SET ROLE to a human's role.
--
\c reg_hard_prod :su
CREATE EXTENSION dblink;
CREATE FUNCTION public.run_command_on_workers(command text) RETURNS text
  LANGUAGE plpgsql AS $$ BEGIN RETURN 'sent to every worker: ' || command; END $$;
GRANT EXECUTE ON FUNCTION public.run_command_on_workers(text) TO PUBLIC;
CREATE FUNCTION public.citus_internal_delete_shard_metadata(shard_id bigint) RETURNS void
  LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'shard % forgotten', shard_id; END $$;
GRANT EXECUTE ON FUNCTION public.citus_internal_delete_shard_metadata(bigint) TO PUBLIC;
CREATE FUNCTION public.citus_drop_all_shards(logicalrelid regclass, schema_name text, table_name text)
  RETURNS int LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'shards of % dropped', logicalrelid; RETURN 1; END $$;
GRANT EXECUTE ON FUNCTION public.citus_drop_all_shards(regclass, text, text) TO PUBLIC;
SELECT public.run_command_on_workers('DELETE FROM public.orders_102008');
SELECT public.citus_drop_all_shards('public.orders', 'public', 'orders');
\c reg_hard_prod reg_hard_agent
SELECT public.run_command_on_workers('DELETE FROM public.orders_102008');
\echo :SQLSTATE
SET ROLE reg_hard_team;
SELECT public.run_command_on_workers('DELETE FROM public.orders_102008');
\echo :SQLSTATE
RESET ROLE;
SET application_name = 'citus_internal gpid=10000000001';
SELECT public.citus_internal_delete_shard_metadata(102008);
\echo :SQLSTATE
RESET application_name;
SELECT public.citus_drop_all_shards('public.orders', 'public', 'orders');
\echo :SQLSTATE
SELECT dblink_connect('elsewhere', 'dbname=reg_hard_prod');
\echo :SQLSTATE

--
-- Clean up.
--
\c :regdb :su
DROP DATABASE reg_hard_prod WITH (FORCE);
DROP ROLE reg_hard_agent, reg_hard_owner, reg_hard_team;
