-- ai_agent_safety: short-lived agent credentials, issued and revoked from SQL.
--
-- The login checks themselves (expiry, lifetime, superuser, environment) are in
-- the server hooks (src/auth.rs, src/credentials.rs); these functions are the
-- DBA's side: issue, revoke, report.

-- The agent group's name, as configured.
CREATE FUNCTION ai_agent_safety._agent_group()
RETURNS name LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT COALESCE(NULLIF(current_setting('ai_agent_safety.agent_role', true), ''), 'ai_agent')::name
$$;

-- ai_agent_safety.allowed_environments as stored for a role (ALTER ROLE ... SET).
CREATE FUNCTION ai_agent_safety._role_environments(role oid)
RETURNS text[] LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT array_agg(btrim(e) ORDER BY btrim(e))
      FROM pg_db_role_setting s,
           unnest(s.setconfig) AS c(kv),
           unnest(string_to_array(substr(c.kv, length('ai_agent_safety.allowed_environments=') + 1), ',')) AS e
     WHERE s.setrole = role AND s.setdatabase = 0
       AND c.kv LIKE 'ai\_agent\_safety.allowed\_environments=%'
       AND btrim(e) <> ''
$$;

CREATE FUNCTION ai_agent_safety._max_lifetime()
RETURNS interval LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT current_setting('ai_agent_safety.max_credential_lifetime')::interval
$$;

CREATE FUNCTION ai_agent_safety.issue_agent_credentials(role name, ttl interval DEFAULT '1 hour', environments text[] DEFAULT NULL)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET password_encryption = 'scram-sha-256'
AS $$
DECLARE
    r record;
    secret text;
    until timestamptz;
    env text;
    group_name name := ai_agent_safety._agent_group();
BEGIN
    PERFORM ai_agent_safety._assert_approver('issue credentials with');
    IF role IS NULL OR btrim(role) = '' THEN
        RAISE EXCEPTION 'role is required' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF ttl IS NULL OR ttl <= interval '0' THEN
        RAISE EXCEPTION 'ttl must be a positive interval, got %', COALESCE(ttl::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF now() + ttl > now() + ai_agent_safety._max_lifetime() THEN
        RAISE EXCEPTION 'ttl % is longer than ai_agent_safety.max_credential_lifetime (%)', ttl, current_setting('ai_agent_safety.max_credential_lifetime')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Issue shorter credentials and refresh them when needed; agents never hold long-lived credentials.';
    END IF;
    IF environments IS NOT NULL THEN
        IF array_length(environments, 1) > 32 THEN
            RAISE EXCEPTION 'too many environments: % (at most 32)', array_length(environments, 1)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOREACH env IN ARRAY environments LOOP
            IF env IS NULL OR btrim(env) = '' OR length(env) > 200 OR env ~ '[,''"]' THEN
                RAISE EXCEPTION 'invalid environment label %', COALESCE(quote_literal(env), 'NULL')
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Labels are non-empty, at most 200 characters, without commas or quotes, e.g. ARRAY[''development'', ''staging''].';
            END IF;
        END LOOP;
    END IF;

    SELECT a.oid, a.rolsuper INTO r FROM pg_authid a WHERE a.rolname = role;
    IF FOUND THEN
        IF r.rolsuper THEN
            RAISE EXCEPTION 'role "%" is a superuser; an agent must never hold superuser', role
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NOT ai_agent_safety.role_is_agent(r.oid) THEN
            RAISE EXCEPTION 'role "%" exists and is not an agent; refusing to turn it into one', role
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Choose a new role name, or make it an agent first: GRANT %I TO %I;', group_name, role);
        END IF;
    ELSE
        EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS IN ROLE %I',
                       role, group_name);
    END IF;

    -- 256 bits from the server's strong random source.
    secret := replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    until := clock_timestamp() + ttl;
    EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L VALID UNTIL %L', role, secret, until);
    IF environments IS NOT NULL THEN
        EXECUTE format('ALTER ROLE %I SET ai_agent_safety.allowed_environments = %L',
                       role, array_to_string(environments, ', '));
    END IF;
    PERFORM ai_agent_safety._audit('credentials', 'issued', 'info', NULL, role,
        format('%s issued credentials for agent role %s valid until %s%s', session_user, role, until,
               COALESCE(', environments ' || array_to_string(environments, ', '), '')),
        NULL);
    RETURN secret;
END $$;
COMMENT ON FUNCTION ai_agent_safety.issue_agent_credentials(name, interval, text[]) IS
    'Create or refresh an agent login role: fresh SCRAM password (returned once), VALID UNTIL now() + ttl, allowed environments.';

CREATE FUNCTION ai_agent_safety.revoke_agent_credentials(role name)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    s record;
    ended integer := 0;
    rolled integer;
    found_any boolean;
BEGIN
    PERFORM ai_agent_safety._assert_approver('revoke credentials with');
    IF role IS NULL THEN
        RAISE EXCEPTION 'role is required' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT a.oid INTO r FROM pg_authid a WHERE a.rolname = role;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role "%" does not exist', role USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT ai_agent_safety.role_is_agent(r.oid) THEN
        RAISE EXCEPTION 'role "%" is not an agent', role
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'ai_agent_safety.revoke_agent_credentials only expires agent roles; for other roles use ALTER ROLE ... VALID UNTIL.';
    END IF;
    EXECUTE format('ALTER ROLE %I VALID UNTIL %L', role, clock_timestamp());
    -- Sessions can come and go meanwhile (a pool reconnecting): the activity
    -- is read afresh each round (pg_stat_activity keeps one snapshot per
    -- transaction otherwise), until a round finds none.
    FOR round IN 1..5 LOOP
        PERFORM pg_stat_clear_snapshot();
        found_any := false;
        FOR s IN SELECT pid FROM pg_stat_activity WHERE usesysid = r.oid AND pid <> pg_backend_pid() LOOP
            found_any := true;
            -- Wait (up to 5 s) until the backend is gone. One that ended by
            -- itself meanwhile is gone too; one still there is an error,
            -- never silent.
            IF NOT pg_terminate_backend(s.pid, 5000) THEN
                PERFORM pg_stat_clear_snapshot();
                IF EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = s.pid AND usesysid = r.oid) THEN
                    RAISE EXCEPTION 'revocation of "%" incomplete: session pid % did not end', role, s.pid
                        USING ERRCODE = 'object_in_use';
                END IF;
                CONTINUE;
            END IF;
            ended := ended + 1;
        END LOOP;
        EXIT WHEN NOT found_any;
    END LOOP;
    -- Transactions the role prepared outlive its sessions (and may hold
    -- locks). Agents may not prepare any (the guard refuses PREPARE
    -- TRANSACTION); one made before the role was an agent, or before the
    -- extension, is rolled back in its database by a background worker.
    -- One that could not be (no free worker slot) is reported with the
    -- statements that end it.
    rolled := ai_agent_safety._roll_back_prepared(role);
    IF rolled > 0 THEN
        RAISE NOTICE 'rolled back % prepared transaction(s) of agent role "%"', rolled, role;
    END IF;
    SELECT count(*), string_agg(format('ROLLBACK PREPARED %L; (in database %I)', p.gid, p.database), ' ' ORDER BY p.prepared)
      INTO s FROM pg_prepared_xacts p WHERE p.owner = role;
    IF s.count > 0 THEN
        RAISE WARNING 'agent role "%" still has % prepared transaction(s), which outlive its sessions', role, s.count
            USING HINT = 'No background worker could roll them back (see max_worker_processes). A DBA ends them: ' || s.string_agg;
    END IF;
    PERFORM ai_agent_safety._audit('credentials', 'revoked', 'info', NULL, role,
        format('%s revoked the credentials of agent role %s, ended %s open session(s) and rolled back %s prepared transaction(s)%s',
               session_user, role, ended, rolled,
               CASE WHEN s.count > 0 THEN format('; %s prepared transaction(s) remain', s.count) ELSE '' END),
        NULL);
    RETURN ended;
END $$;
REVOKE ALL ON FUNCTION ai_agent_safety._roll_back_prepared(text) FROM PUBLIC;
COMMENT ON FUNCTION ai_agent_safety.revoke_agent_credentials(name) IS
    'Expire an agent role now and end its open sessions; returns how many sessions were ended.';

CREATE VIEW ai_agent_safety.credential_report AS
WITH agents AS (
    SELECT a.oid, a.rolname, a.rolcanlogin, a.rolsuper, a.rolpassword IS NOT NULL AS has_password,
           NULLIF(a.rolvaliduntil, 'infinity') AS valid_until
      FROM pg_authid a
     WHERE ai_agent_safety.role_is_agent(a.oid)
       AND a.rolname <> ai_agent_safety._agent_group()
), sessions AS (
    SELECT usesysid, count(*) AS n FROM pg_stat_activity WHERE usesysid IS NOT NULL GROUP BY usesysid
)
SELECT g.rolname AS role,
       g.rolcanlogin AS can_login,
       g.valid_until,
       CASE WHEN g.valid_until IS NULL THEN NULL
            ELSE greatest(g.valid_until - now(), interval '0') END AS time_remaining,
       COALESCE(s.n, 0) AS open_sessions,
       ai_agent_safety._role_environments(g.oid) AS allowed_environments,
       array_remove(ARRAY[
           CASE WHEN g.rolsuper THEN 'superuser' END,
           CASE WHEN g.valid_until IS NULL AND g.rolcanlogin AND g.has_password
                THEN 'login role with a password but no expiry'
                WHEN g.valid_until IS NULL THEN 'no expiry' END,
           CASE WHEN g.valid_until > now() + ai_agent_safety._max_lifetime()
                THEN 'lifetime above the maximum (' || current_setting('ai_agent_safety.max_credential_lifetime') || ')' END,
           CASE WHEN g.valid_until <= now() AND COALESCE(s.n, 0) > 0
                THEN 'expired but still has ' || s.n || ' open session(s)' END
       ], NULL) AS problems
  FROM agents g
  LEFT JOIN sessions s ON s.usesysid = g.oid
 ORDER BY g.rolname;
REVOKE ALL ON ai_agent_safety.credential_report FROM PUBLIC;
GRANT SELECT ON ai_agent_safety.credential_report TO ai_agent_approver;
