--
-- recycle: what an agent drops is kept. An agent's DROP DATABASE keeps the
-- database (renamed, closed to connections) for recycle_retention; an
-- approver reads the recycle bin and restores or purges an entry; agents
-- can do none of that. (Entry ids count from 1 in a fresh cluster, and
-- only this test keeps anything.)
--
\getenv abs_srcdir PG_ABS_SRCDIR
\set helpers :abs_srcdir '/include/helpers.sql'
\set regdb :DBNAME
\set su :USER
\i :helpers

DO $$ BEGIN
    EXECUTE format('CREATE ROLE reg_rb_agent LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '1 hour');
END $$;
CREATE ROLE reg_rb_approver LOGIN IN ROLE ai_agent_approver;
CREATE DATABASE reg_rb_prod OWNER reg_rb_agent;
\c reg_rb_prod :su
CREATE TABLE public.orders (id int PRIMARY KEY, note text);
INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 100) g;
SELECT md5(string_agg(id || note, ',' ORDER BY id)) AS orders_before FROM public.orders \gset
\c :regdb :su

--
-- 1. The agent drops a database: it succeeds, with a NOTICE that names the
-- entry, and the name is free at once.
--
\c :regdb reg_rb_agent
DROP DATABASE reg_rb_prod;
SELECT count(*) AS named_reg_rb_prod FROM pg_database WHERE datname = 'reg_rb_prod';
SELECT datname, datallowconn FROM pg_database WHERE datname LIKE 'recycled%';
-- The agent can neither read nor undo the recycle bin, nor turn it off.
SELECT * FROM ai_agent_safety.recycle_bin;
SELECT ai_agent_safety.restore_dropped(1);
SELECT ai_agent_safety.purge_dropped(1);
SET ai_agent_safety.recycle_retention = 0;

--
-- 2. The approver reads the entry and restores it: every row is back.
--
\c :regdb reg_rb_approver
SELECT id, kind, object, kept_as, dropped_by, statement, expires_at - at AS kept_for, to_restore
  FROM ai_agent_safety.recycle_bin;
SELECT ai_agent_safety.restore_dropped(1);
SELECT ai_agent_safety.restore_dropped(1);
\c reg_rb_prod :su
SELECT md5(string_agg(id || note, ',' ORDER BY id)) = :'orders_before' AS same_orders FROM public.orders;

--
-- 3. A name taken since needs new_name; a bad name is refused; purge is for
-- good.
--
\c :regdb reg_rb_agent
DROP DATABASE reg_rb_prod;
\c :regdb :su
CREATE DATABASE reg_rb_prod;
\c :regdb reg_rb_approver
SELECT ai_agent_safety.restore_dropped(2);
SELECT ai_agent_safety.restore_dropped(2, new_name => '');
SELECT ai_agent_safety.restore_dropped(2, new_name => 'reg_rb_prod_back');
\c :regdb :su
ALTER DATABASE reg_rb_prod_back OWNER TO reg_rb_agent;
\c :regdb reg_rb_agent
DROP DATABASE reg_rb_prod_back;
\c :regdb reg_rb_approver
SELECT ai_agent_safety.purge_dropped(3);
SELECT count(*) AS left_of_entry_3 FROM pg_database WHERE datname LIKE 'recycled\_3\_%';
SELECT count(*) AS entries FROM ai_agent_safety.recycle_bin;

--
-- 4. An agent's TRUNCATE keeps the rows of every table it empties; a
-- restore puts them back.
--
\c :regdb :su
CREATE TABLE public.reg_rb_orders (id int PRIMARY KEY, note text);
CREATE TABLE public.reg_rb_lines (id int GENERATED ALWAYS AS IDENTITY, order_id int REFERENCES public.reg_rb_orders);
INSERT INTO public.reg_rb_orders SELECT g, 'order ' || g FROM generate_series(1, 10) g;
INSERT INTO public.reg_rb_lines (order_id) SELECT 1 + g % 10 FROM generate_series(1, 20) g;
ALTER TABLE public.reg_rb_orders OWNER TO reg_rb_agent;
ALTER TABLE public.reg_rb_lines OWNER TO reg_rb_agent;
\c :regdb reg_rb_agent
TRUNCATE reg_rb_orders CASCADE;
SELECT count(*) AS lines_left FROM reg_rb_lines;
\c :regdb reg_rb_approver
SELECT id, kind, object, kept_as, dropped_by, statement, rows FROM ai_agent_safety.recycle_bin;
SELECT ai_agent_safety.restore_dropped(4);
\c :regdb :su
SELECT (SELECT count(*) FROM reg_rb_orders) AS orders, (SELECT count(*) FROM reg_rb_lines) AS lines;
DROP TABLE public.reg_rb_lines, public.reg_rb_orders;

--
-- 5. An agent's DROP TABLE ... CASCADE keeps the table and its view, cuts
-- the foreign key of a table that stays; the name is free at once; the
-- restore refuses a taken name and new_name while links name the
-- original, then puts everything back. What cannot be kept refuses the
-- DROP, and nothing is dropped.
--
\c :regdb :su
CREATE TABLE public.reg_rb_customers (id int PRIMARY KEY, name text);
INSERT INTO public.reg_rb_customers SELECT g, 'customer ' || g FROM generate_series(1, 5) g;
CREATE VIEW public.reg_rb_names AS SELECT name FROM public.reg_rb_customers;
CREATE TABLE public.reg_rb_invoices (id int, customer_id int REFERENCES public.reg_rb_customers);
INSERT INTO public.reg_rb_invoices VALUES (1, 2);
ALTER TABLE public.reg_rb_customers OWNER TO reg_rb_agent;
ALTER VIEW public.reg_rb_names OWNER TO reg_rb_agent;
GRANT CREATE ON SCHEMA public TO reg_rb_agent;
\c :regdb reg_rb_agent
DROP TABLE reg_rb_customers;
DROP TABLE reg_rb_customers CASCADE;
SELECT * FROM ai_agent_safety_recycle.d5_0_reg_rb_names;
CREATE TABLE public.reg_rb_customers (id int);
\c :regdb reg_rb_approver
SELECT id, kind, object, kept_as, dropped_by, statement FROM ai_agent_safety.recycle_bin;
SELECT ai_agent_safety.restore_dropped(5);
SELECT ai_agent_safety.restore_dropped(5, new_name => 'reg_rb_customers_old');
\c :regdb :su
DROP TABLE public.reg_rb_customers;
\c :regdb reg_rb_approver
SELECT ai_agent_safety.restore_dropped(5);
\c :regdb :su
SELECT count(*) AS names FROM public.reg_rb_names;
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'public.reg_rb_invoices'::regclass;
CREATE TABLE public.reg_rb_archive (id int, old public.reg_rb_customers);
\c :regdb reg_rb_agent
DROP TABLE reg_rb_customers CASCADE;
\c :regdb :su
SELECT count(*) AS customers FROM public.reg_rb_customers;
DROP TABLE public.reg_rb_archive, public.reg_rb_invoices, public.reg_rb_customers CASCADE;
REVOKE CREATE ON SCHEMA public FROM reg_rb_agent;

--
-- 6. An agent's DELETE keeps every row it removes, its foreign key's
-- cascade's too; a restore puts them back. Past recycle_max_bytes the
-- DELETE is refused, and nothing is lost. A DBA's DELETE keeps nothing.
--
\c :regdb :su
CREATE TABLE public.reg_rb_orders (id int PRIMARY KEY, note text);
CREATE TABLE public.reg_rb_lines (id int, order_id int REFERENCES public.reg_rb_orders ON DELETE CASCADE);
INSERT INTO public.reg_rb_orders SELECT g, 'order ' || g FROM generate_series(1, 10) g;
INSERT INTO public.reg_rb_lines SELECT g, 1 + g % 10 FROM generate_series(1, 20) g;
ALTER TABLE public.reg_rb_orders OWNER TO reg_rb_agent;
ALTER TABLE public.reg_rb_lines OWNER TO reg_rb_agent;
SELECT md5(string_agg(o::text, ',' ORDER BY id)) AS orders_before FROM public.reg_rb_orders o \gset
\c :regdb reg_rb_agent
DELETE FROM reg_rb_orders WHERE id <= 2;
SELECT count(*) AS lines_left FROM reg_rb_lines;
\c :regdb reg_rb_approver
SELECT id AS del_id, kind, object, dropped_by, statement, rows FROM ai_agent_safety.recycle_bin WHERE kind = 'delete' \gset
SELECT :'kind' AS kind, :'object' AS object, :'statement' AS statement, :rows AS rows;
SELECT ai_agent_safety.restore_dropped(:del_id) LIKE 'reg_rb_approver restored the rows of public.reg_rb_orders, public.reg_rb_lines (recycle bin entry %, deleted by reg_rb_agent): 6 rows back' AS restored;
\c :regdb :su
SELECT md5(string_agg(o::text, ',' ORDER BY id)) = :'orders_before' AS orders_back, (SELECT count(*) FROM reg_rb_lines) AS lines FROM public.reg_rb_orders o;
ALTER DATABASE :"regdb" SET ai_agent_safety.recycle_max_bytes = '1kB';
\c :regdb reg_rb_agent
DELETE FROM reg_rb_orders;
\c :regdb :su
ALTER DATABASE :"regdb" RESET ai_agent_safety.recycle_max_bytes;
SELECT (SELECT count(*) FROM reg_rb_orders) AS orders, (SELECT count(*) FROM reg_rb_lines) AS lines;
DELETE FROM reg_rb_orders;
SELECT count(*) AS kept_deletes FROM ai_agent_safety.recycle_bin WHERE kind = 'delete';
DROP TABLE public.reg_rb_lines, public.reg_rb_orders;

--
-- 7. A DBA's DROP drops.
--
\c :regdb :su
DROP DATABASE reg_rb_prod;
SELECT count(*) AS recycled FROM pg_database WHERE datname LIKE 'recycled%';

--
-- 8. An agent that may TRUNCATE a table but not read it is told that its
-- rows were kept, not how many.
--
\c :regdb :su
CREATE TABLE public.reg_rb_secret (id int);
INSERT INTO public.reg_rb_secret SELECT generate_series(1, 3);
GRANT TRUNCATE ON public.reg_rb_secret TO reg_rb_agent;
\c :regdb reg_rb_agent
TRUNCATE public.reg_rb_secret;
\c :regdb :su
DROP TABLE public.reg_rb_secret;

-- Clean up.
DROP ROLE reg_rb_agent, reg_rb_approver;
