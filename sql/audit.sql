-- ai_agent_safety: the agent audit log.
--
-- Events are spooled by the backend at the moment of the decision (outside any
-- transaction) and loaded here by the background writer; see src/audit/. The
-- table is append-only for everyone but the writer's retention purge.

CREATE TABLE ai_agent_safety.audit_log (
    id               bigserial PRIMARY KEY,
    ts               timestamptz NOT NULL,
    database         name,
    pid              integer,
    client_addr      text,
    application_name text,
    session_user_name name,
    current_user_name name,
    task_id          text,
    source           text NOT NULL,
    event            text NOT NULL,
    decision         text NOT NULL,
    operation        text,
    object           text,
    statement        text,
    reason           text,
    token            uuid
);
-- Every index costs the writer on each event, and with audit_level = all
-- there is one event per agent statement. Events arrive in about the order of
-- their ts, so a BRIN index finds a time range (retention purge,
-- audit_log_json, the console's filters) for about a quarter of what a btree
-- costs per row (callgrind, one COPY of 20,000 events: 37,800 instructions
-- per row with a btree on ts, 31,800 with BRIN); the primary key serves
-- paging by id. (A sequence CACHE would save about 1,500 more per row, but
-- other sessions insert here too: ids would stop following the order of
-- insertion, and a reader paging by id could skip events.)
CREATE INDEX audit_log_ts ON ai_agent_safety.audit_log USING brin (ts);
COMMENT ON TABLE ai_agent_safety.audit_log IS
    'One row per decision about an AI agent (refusals, token use, credential and environment events; more with audit_level).';

-- Spool files already loaded: makes loading exactly-once across writer crashes.
CREATE TABLE ai_agent_safety.audit_spool_done (
    file    text PRIMARY KEY,
    done_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX audit_spool_done_done_at ON ai_agent_safety.audit_spool_done (done_at);

REVOKE ALL ON ai_agent_safety.audit_log, ai_agent_safety.audit_spool_done FROM PUBLIC;
REVOKE ALL ON SEQUENCE ai_agent_safety.audit_log_id_seq FROM PUBLIC;
GRANT SELECT ON ai_agent_safety.audit_log TO ai_agent_approver;

CREATE FUNCTION ai_agent_safety._audit_append_only()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' AND ai_agent_safety.audit_writer_purging() THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'ai_agent_safety.audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Old events are removed only by the writer''s retention purge (ai_agent_safety.audit_retention).';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON ai_agent_safety.audit_log
    FOR EACH ROW EXECUTE FUNCTION ai_agent_safety._audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON ai_agent_safety.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION ai_agent_safety._audit_append_only();

REVOKE ALL ON FUNCTION ai_agent_safety._audit(text, text, text, text, text, text, uuid) FROM PUBLIC;

CREATE FUNCTION ai_agent_safety.audit_log_json(since timestamptz)
RETURNS SETOF json LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF since IS NULL THEN
        RAISE EXCEPTION 'since is required' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'For everything: SELECT * FROM ai_agent_safety.audit_log_json(''-infinity''::timestamptz);';
    END IF;
    RETURN QUERY SELECT row_to_json(a) FROM ai_agent_safety.audit_log a WHERE a.ts >= since ORDER BY a.id;
END $$;
COMMENT ON FUNCTION ai_agent_safety.audit_log_json(timestamptz) IS 'Audit events since a time, one JSON object per event (approvers and superusers).';

CREATE VIEW ai_agent_safety.audit_stats AS
SELECT * FROM ai_agent_safety._audit_stats();
REVOKE ALL ON ai_agent_safety.audit_stats FROM PUBLIC;
GRANT SELECT ON ai_agent_safety.audit_stats TO ai_agent_approver;

CREATE VIEW ai_agent_safety.agent_activity AS
WITH agents AS (
    SELECT r.oid, r.rolname
      FROM pg_roles r
     WHERE ai_agent_safety.role_is_agent(r.oid)
       AND r.rolname <> ai_agent_safety._agent_group()
)
SELECT g.rolname AS role,
       max(a.ts) AS last_seen,
       count(a.id) FILTER (WHERE a.source IN ('guard', 'environment', 'token') AND a.event <> 'requested') AS statements,
       count(a.id) FILTER (WHERE a.decision IN ('refuse', 'would_refuse')) AS refusals,
       count(a.id) FILTER (WHERE a.event = 'consumed') AS tokens_used,
       (SELECT count(*) FROM pg_stat_activity s WHERE s.usesysid = g.oid) AS open_sessions
  FROM agents g
  LEFT JOIN ai_agent_safety.audit_log a ON a.session_user_name = g.rolname
 GROUP BY g.oid, g.rolname
 ORDER BY g.rolname;
REVOKE ALL ON ai_agent_safety.agent_activity FROM PUBLIC;
GRANT SELECT ON ai_agent_safety.agent_activity TO ai_agent_approver;
