\set ECHO none
-- Shared by the pg_regress tests (included with \i, not echoed). Include it
-- as a superuser once in each database the test creates: it defines the
-- helper functions below in that database's public schema (anyone may call
-- them; they run with the caller's rights).
--
-- Errors are shown as psql shows them to a user (message, DETAIL, HINT), but
-- without CONTEXT: the context names the extension's internal PL/pgSQL
-- functions and line numbers, which are not part of the user-visible contract.
\set SHOW_CONTEXT never
\set VERBOSITY default

-- reg_mask(text): replaces what differs from run to run (token ids,
-- timestamps, process ids, the server address in libpq errors) with fixed words.
CREATE OR REPLACE FUNCTION public.reg_mask(t text) RETURNS text
LANGUAGE sql IMMUTABLE AS $f$
    SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(t,
        '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}', '<token>', 'g'),
        '\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?( ?[A-Z]{2,5}\M|[+-]\d{2}(:\d{2})?)?', '<time>', 'g'),
        '(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} \d{2}:\d{2}:\d{2}(\.\d+)? \d{4}( [A-Z]{2,5}\M)?', '<time>', 'g'),
        'pid \d+', 'pid <pid>', 'g'),
        'connection to server (on socket "[^"]*"|at "[^"]*", port \d+) failed: ', '', 'g')
$f$;

-- reg_try(sql): runs one statement (PL/pgSQL EXECUTE, which the guard sees
-- like any other statement) and returns 'ok', or the error as psql would show
-- it, with its SQLSTATE, masked by reg_mask. Used only where the error text
-- holds a token id, a time or a pid; everywhere else psql shows the error itself.
CREATE OR REPLACE FUNCTION public.reg_try(stmt text) RETURNS SETOF text
LANGUAGE plpgsql AS $f$
DECLARE
    st text; m text; d text; h text;
BEGIN
    EXECUTE stmt;
    RETURN NEXT 'ok';
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT,
                            d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
    RETURN NEXT 'ERROR ' || st || ':  ' || public.reg_mask(m);
    IF d <> '' THEN RETURN NEXT 'DETAIL:  ' || public.reg_mask(d); END IF;
    IF h <> '' THEN RETURN NEXT 'HINT:  ' || public.reg_mask(h); END IF;
END $f$;

-- reg_connect(name, role, db [, extra]): opens a dblink connection called
-- name, logged in as role over the server's own unix socket (trust; extra
-- conninfo such as 'host=127.0.0.1 password=...' overrides), and returns
-- 'connected', or the server's refusal as libpq reports it (one row per line),
-- masked. Needs the dblink extension in the current database (scripts/regress
-- loads it into the test database). A dblink connection is a real login of
-- that role, so it can stand for an agent's own session, e.g. one that
-- revoke_agent_credentials ends.
CREATE OR REPLACE FUNCTION public.reg_connect(name text, role text, db text, extra text DEFAULT '') RETURNS SETOF text
LANGUAGE plpgsql AS $f$
DECLARE
    d text;
BEGIN
    PERFORM dblink_connect(name, format('host=%s port=%s dbname=%s user=%s application_name=reg_connect %s',
        btrim(split_part(current_setting('unix_socket_directories'), ',', 1)),
        current_setting('port'), db, role, extra));
    RETURN NEXT 'connected';
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN QUERY SELECT regexp_split_to_table(public.reg_mask(rtrim(d, E'\n')), E'\n');
END $f$;

-- reg_disconnect(name): closes a dblink connection and waits until its server
-- session has ended, so that what follows (counts of open sessions,
-- revoke_agent_credentials) never sees it.
CREATE OR REPLACE FUNCTION public.reg_disconnect(name text) RETURNS void
LANGUAGE plpgsql AS $f$
DECLARE
    backend int;
    waited int := 0;
BEGIN
    SELECT p INTO backend FROM dblink(name, 'SELECT pg_backend_pid()') AS t(p int);
    PERFORM dblink_disconnect(name);
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = backend);
        waited := waited + 1;
        IF waited > 3000 THEN
            RAISE EXCEPTION 'session % of dblink connection % did not end', backend, name;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $f$;

-- reg_login(role, db): does role get a session in db? 'connected' (and the
-- session is closed again), or the login refusal.
CREATE OR REPLACE FUNCTION public.reg_login(role text, db text) RETURNS SETOF text
LANGUAGE plpgsql AS $f$
DECLARE
    r text[] := ARRAY(SELECT public.reg_connect('reg_login', role, db));
BEGIN
    IF r = ARRAY['connected'] THEN
        PERFORM public.reg_disconnect('reg_login');
    END IF;
    RETURN QUERY SELECT unnest(r);
END $f$;
\set ECHO all
