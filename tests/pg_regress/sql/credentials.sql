--
-- credentials: agent logins need a short VALID UNTIL (checked for every
-- authentication method, here trust); issue_agent_credentials and
-- revoke_agent_credentials, their bad inputs and who may call them; the
-- credential report.
--
-- Logins are made with dblink (reg_login / reg_connect in
-- include/helpers.sql), so the refusal a client would get at connect time is
-- shown as libpq reports it, with the server's socket path and times masked.
--
\getenv abs_srcdir PG_ABS_SRCDIR
\set helpers :abs_srcdir '/include/helpers.sql'
\i :helpers
\set regdb :DBNAME
\set su :USER

DO $$ BEGIN
    EXECUTE format('CREATE ROLE reg_cred_agent LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '1 hour');
    EXECUTE format('CREATE ROLE reg_cred_far LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '48 hours');
    EXECUTE format('CREATE ROLE reg_cred_super SUPERUSER LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '1 hour');
END $$;
CREATE ROLE reg_cred_no_expiry LOGIN IN ROLE ai_agent;
CREATE ROLE reg_cred_infinite LOGIN IN ROLE ai_agent VALID UNTIL 'infinity';
CREATE ROLE reg_cred_expired LOGIN IN ROLE ai_agent VALID UNTIL '2000-01-01 00:00:00+00';
CREATE ROLE reg_cred_approver LOGIN IN ROLE ai_agent_approver;
CREATE ROLE reg_cred_human LOGIN;

--
-- 1. Login checks.
--
SELECT * FROM reg_login('reg_cred_agent', :'regdb');
SELECT * FROM reg_login('reg_cred_no_expiry', :'regdb');
SELECT * FROM reg_login('reg_cred_infinite', :'regdb');
SELECT * FROM reg_login('reg_cred_expired', :'regdb');
SELECT * FROM reg_login('reg_cred_far', :'regdb');
SELECT * FROM reg_login('reg_cred_super', :'regdb');
-- Humans need no expiry.
SELECT * FROM reg_login('reg_cred_human', :'regdb');
-- What the report says about these agents.
SELECT role, can_login, open_sessions, allowed_environments, problems
  FROM ai_agent_safety.credential_report WHERE role LIKE 'reg\_cred\_%' ORDER BY role;

--
-- 2. issue_agent_credentials, as an approver: bad inputs.
--
\c :regdb reg_cred_approver
SELECT ai_agent_safety.issue_agent_credentials(NULL);
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials('');
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot', NULL);
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot', '0');
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot', '-1 hour');
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot', '25 hours');
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot', '1 hour', ARRAY['development, production']);
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot', '1 hour', ARRAY['it''s']);
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot', '1 hour', ARRAY['development', NULL]);
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot', '1 hour', ARRAY['']);
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot', '1 hour', ARRAY[repeat('e', 201)]);
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot', '1 hour', array_fill('dev'::text, ARRAY[33]));
\echo :SQLSTATE
-- Never turns a human role or a superuser into an agent.
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_human');
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials(:'su');
\echo :SQLSTATE
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_super');
\echo :SQLSTATE
SELECT count(*) AS reg_cred_bot_exists FROM pg_roles WHERE rolname = 'reg_cred_bot';

--
-- 3. issue_agent_credentials: a new agent, then a refresh.
--
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot', '30 minutes', ARRAY['development', 'staging']) AS bot_password \gset
SELECT length(:'bot_password') AS password_length, :'bot_password' ~ '^[0-9a-f]{64}$' AS is_hex;
SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb,
       rolvaliduntil > now() AND rolvaliduntil <= now() + interval '30 minutes' AS valid_for_30_minutes,
       pg_has_role('reg_cred_bot', 'ai_agent', 'MEMBER') AS is_agent
  FROM pg_roles WHERE rolname = 'reg_cred_bot';
SELECT role, can_login, time_remaining <= interval '30 minutes' AS short, open_sessions, allowed_environments, problems
  FROM ai_agent_safety.credential_report WHERE role = 'reg_cred_bot';
-- The password is a real SCRAM login over TCP.
\c :regdb :su
SELECT rolpassword LIKE 'SCRAM-SHA-256$%' AS scram FROM pg_authid WHERE rolname = 'reg_cred_bot';
SELECT * FROM reg_connect('bot_tcp', 'reg_cred_bot', :'regdb', format('host=127.0.0.1 password=%s', :'bot_password'));
SELECT * FROM dblink('bot_tcp', 'SELECT session_user, current_setting(''ai_agent_safety.agent_session'')') AS t(who name, agent_session text);
SELECT reg_disconnect('bot_tcp');
SELECT * FROM reg_connect('bot_tcp', 'reg_cred_bot', :'regdb', 'host=127.0.0.1 password=wrong');
-- A refresh sets a new password and expiry; NULL environments keep the scope.
\c :regdb reg_cred_approver
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot', '2 hours') <> :'bot_password' AS new_password;
SELECT role, time_remaining > interval '1 hour' AS refreshed, allowed_environments, problems
  FROM ai_agent_safety.credential_report WHERE role = 'reg_cred_bot';

--
-- 4. Who may issue and revoke: not a human who is no approver, not an agent.
--
\c :regdb reg_cred_human
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_bot2');
\echo :SQLSTATE
SELECT ai_agent_safety.revoke_agent_credentials('reg_cred_bot');
\echo :SQLSTATE
SELECT * FROM ai_agent_safety.credential_report;
\echo :SQLSTATE
\c :regdb reg_cred_agent
SELECT ai_agent_safety.issue_agent_credentials('reg_cred_agent', '24 hours');
\echo :SQLSTATE
SELECT ai_agent_safety.revoke_agent_credentials('reg_cred_bot');
\echo :SQLSTATE
SELECT * FROM ai_agent_safety.credential_report;
\echo :SQLSTATE
ALTER ROLE reg_cred_agent VALID UNTIL 'infinity';
\echo :SQLSTATE
ALTER ROLE reg_cred_agent SET ai_agent_safety.allowed_environments = 'production';
\echo :SQLSTATE

--
-- 5. revoke_agent_credentials: bad inputs, then a live session of the agent
-- (a dblink connection that logged in as reg_cred_bot) is ended.
--
\c :regdb reg_cred_approver
SELECT ai_agent_safety.revoke_agent_credentials(NULL);
\echo :SQLSTATE
SELECT ai_agent_safety.revoke_agent_credentials('reg_cred_nobody');
\echo :SQLSTATE
SELECT ai_agent_safety.revoke_agent_credentials('reg_cred_human');
\echo :SQLSTATE
\c :regdb :su
SELECT * FROM reg_connect('bot', 'reg_cred_bot', :'regdb');
SELECT * FROM dblink('bot', 'SELECT session_user') AS t(who name);
-- The approver revokes (this session becomes the approver; the dblink
-- connection stays open): one session ended.
SET SESSION AUTHORIZATION reg_cred_approver;
SELECT ai_agent_safety.revoke_agent_credentials('reg_cred_bot') AS sessions_ended;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS bot_sessions FROM pg_stat_activity WHERE usename = 'reg_cred_bot';
-- The ended session's next query fails (first line of the error only: what
-- libpq adds after it depends on the socket).
SELECT split_part(r, E'\n', 1) AS first_line
  FROM reg_try($$SELECT * FROM dblink('bot', 'SELECT 1') AS t(x int)$$) AS r LIMIT 1;
SELECT dblink_disconnect('bot');
-- It cannot log in again until fresh credentials are issued.
SELECT * FROM reg_login('reg_cred_bot', :'regdb');
SELECT role, can_login, time_remaining, open_sessions, problems
  FROM ai_agent_safety.credential_report WHERE role = 'reg_cred_bot';
SELECT length(ai_agent_safety.issue_agent_credentials('reg_cred_bot', '10 minutes')) AS password_length;
SELECT * FROM reg_login('reg_cred_bot', :'regdb');
-- Revoking a role without sessions ends none.
SELECT ai_agent_safety.revoke_agent_credentials('reg_cred_bot') AS sessions_ended;

-- Clean up.
\c :regdb :su
DROP ROLE reg_cred_agent, reg_cred_far, reg_cred_super, reg_cred_no_expiry, reg_cred_infinite,
          reg_cred_expired, reg_cred_approver, reg_cred_human, reg_cred_bot;
