-- ai_agent_safety: the agent audit log.
--
-- Events are spooled by the backend at the moment of the decision (outside any
-- transaction) and loaded here by the background writer; see src/audit/. The
-- table is append-only for everyone but the writer's retention purge.

-- The audit log is the view ai_agent_safety.audit_log over two tables:
-- audit_batch, where the writer stores spooled events many to a row (a row
-- per event cost it about 25,000 instructions, a batch about 1,500 per
-- event; README, Performance), and audit_row, one row per event, for the
-- events written inside a transaction (review and recycle bin outcomes,
-- maintenance), for spool lines a batch cannot carry, and for events kept
-- from before 0.2.0.
CREATE TABLE ai_agent_safety.audit_row (
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
-- A batch takes one value of the sequence for its up to 1,024 events
-- (aas_policy::audit::batch::MAX_EVENTS), which are numbered from it: ids
-- stay unique and follow the order the writer stored the events in.
ALTER SEQUENCE ai_agent_safety.audit_row_id_seq INCREMENT BY 1024;
-- Events arrive in about the order of their ts, so a BRIN index finds a time
-- range for about a quarter of what a btree costs per row.
CREATE INDEX audit_row_ts ON ai_agent_safety.audit_row USING brin (ts);
COMMENT ON TABLE ai_agent_safety.audit_row IS
    'Audit events one to a row (written inside a transaction, or from before 0.2.0); read them through ai_agent_safety.audit_log.';

CREATE TABLE ai_agent_safety.audit_batch (
    first_id bigint PRIMARY KEY,
    events   integer NOT NULL CHECK (events BETWEEN 1 AND 1024),
    ts_first timestamptz NOT NULL,
    ts_last  timestamptz NOT NULL,
    rows     bytea NOT NULL
);
CREATE INDEX audit_batch_ts_last ON ai_agent_safety.audit_batch (ts_last);
COMMENT ON TABLE ai_agent_safety.audit_batch IS
    'Audit events stored many to a row by the audit writer; read them through ai_agent_safety.audit_log.';
-- lz4 where the server has it: about three times faster than pglz here.
DO $$
BEGIN
    ALTER TABLE ai_agent_safety.audit_batch ALTER COLUMN rows SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;
END $$;

CREATE VIEW ai_agent_safety.audit_log AS
SELECT r.id, r.ts, r.database, r.pid, r.client_addr, r.application_name,
       r.session_user_name, r.current_user_name, r.task_id, r.source, r.event,
       r.decision, r.operation, r.object, r.statement, r.reason, r.token
  FROM ai_agent_safety.audit_row r
UNION ALL
SELECT e.id, e.ts, e.database::name, e.pid, e.client_addr, e.application_name,
       e.session_user_name::name, e.current_user_name::name, e.task_id,
       e.source, e.event, e.decision, e.operation, e.object, e.statement,
       e.reason, e.token
  FROM ai_agent_safety.audit_batch b,
       LATERAL ai_agent_safety._audit_events(b.rows, b.first_id) e;
COMMENT ON VIEW ai_agent_safety.audit_log IS
    'One row per decision about an AI agent (refusals, token use, credential and environment events; more with audit_level).';

-- Spool files already loaded: makes loading exactly-once across writer crashes.
CREATE TABLE ai_agent_safety.audit_spool_done (
    file    text PRIMARY KEY,
    done_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX audit_spool_done_done_at ON ai_agent_safety.audit_spool_done (done_at);

REVOKE ALL ON ai_agent_safety.audit_log, ai_agent_safety.audit_row,
    ai_agent_safety.audit_batch, ai_agent_safety.audit_spool_done FROM PUBLIC;
REVOKE ALL ON SEQUENCE ai_agent_safety.audit_row_id_seq FROM PUBLIC;
GRANT SELECT ON ai_agent_safety.audit_log, ai_agent_safety.audit_row,
    ai_agent_safety.audit_batch TO ai_agent_approver;
-- Who reads the view unpacks batches with this (as themselves); nobody
-- else needs it.
REVOKE ALL ON FUNCTION ai_agent_safety._audit_events(bytea, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ai_agent_safety._audit_events(bytea, bigint) TO ai_agent_approver;

CREATE FUNCTION ai_agent_safety._audit_append_only()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW' AND TG_TABLE_NAME <> 'audit_log'
       AND ai_agent_safety.audit_writer_purging() THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'ai_agent_safety.audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Old events are removed only by the writer''s retention purge (ai_agent_safety.audit_retention).';
END $$;
CREATE TRIGGER audit_row_append_only BEFORE UPDATE OR DELETE ON ai_agent_safety.audit_row
    FOR EACH ROW EXECUTE FUNCTION ai_agent_safety._audit_append_only();
CREATE TRIGGER audit_row_no_truncate BEFORE TRUNCATE ON ai_agent_safety.audit_row
    FOR EACH STATEMENT EXECUTE FUNCTION ai_agent_safety._audit_append_only();
CREATE TRIGGER audit_batch_append_only BEFORE UPDATE OR DELETE ON ai_agent_safety.audit_batch
    FOR EACH ROW EXECUTE FUNCTION ai_agent_safety._audit_append_only();
CREATE TRIGGER audit_batch_no_truncate BEFORE TRUNCATE ON ai_agent_safety.audit_batch
    FOR EACH STATEMENT EXECUTE FUNCTION ai_agent_safety._audit_append_only();
CREATE TRIGGER audit_log_append_only INSTEAD OF UPDATE OR DELETE ON ai_agent_safety.audit_log
    FOR EACH ROW EXECUTE FUNCTION ai_agent_safety._audit_append_only();

-- An INSERT into the view (a superuser's; nobody else may) stores one row.
CREATE FUNCTION ai_agent_safety._audit_log_insert()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO ai_agent_safety.audit_row (ts, database, pid, client_addr,
        application_name, session_user_name, current_user_name, task_id,
        source, event, decision, operation, object, statement, reason, token)
    VALUES (NEW.ts, NEW.database, NEW.pid, NEW.client_addr,
        NEW.application_name, NEW.session_user_name, NEW.current_user_name,
        NEW.task_id, NEW.source, NEW.event, NEW.decision, NEW.operation,
        NEW.object, NEW.statement, NEW.reason, NEW.token)
    RETURNING id INTO NEW.id;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_insert INSTEAD OF INSERT ON ai_agent_safety.audit_log
    FOR EACH ROW EXECUTE FUNCTION ai_agent_safety._audit_log_insert();

REVOKE ALL ON FUNCTION ai_agent_safety._audit(text, text, text, text, text, text, uuid) FROM PUBLIC;

-- The events since a time: what audit_log holds from then, reading only the
-- batches that reach it.
CREATE FUNCTION ai_agent_safety.audit_log_since(since timestamptz)
RETURNS SETOF ai_agent_safety.audit_log LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF since IS NULL THEN
        RAISE EXCEPTION 'since is required' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'For everything: SELECT * FROM ai_agent_safety.audit_log_since(''-infinity''::timestamptz);';
    END IF;
    RETURN QUERY
    SELECT r.id, r.ts, r.database, r.pid, r.client_addr, r.application_name,
           r.session_user_name, r.current_user_name, r.task_id, r.source, r.event,
           r.decision, r.operation, r.object, r.statement, r.reason, r.token
      FROM ai_agent_safety.audit_row r
     WHERE r.ts >= since
    UNION ALL
    SELECT e.id, e.ts, e.database::name, e.pid, e.client_addr, e.application_name,
           e.session_user_name::name, e.current_user_name::name, e.task_id,
           e.source, e.event, e.decision, e.operation, e.object, e.statement,
           e.reason, e.token
      FROM ai_agent_safety.audit_batch b,
           LATERAL ai_agent_safety._audit_events(b.rows, b.first_id) e
     WHERE b.ts_last >= since AND e.ts >= since;
END $$;
COMMENT ON FUNCTION ai_agent_safety.audit_log_since(timestamptz) IS 'Audit events since a time, as rows of audit_log; reads only what reaches that time (approvers and superusers).';

CREATE FUNCTION ai_agent_safety.audit_log_json(since timestamptz)
RETURNS SETOF json LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF since IS NULL THEN
        RAISE EXCEPTION 'since is required' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'For everything: SELECT * FROM ai_agent_safety.audit_log_json(''-infinity''::timestamptz);';
    END IF;
    RETURN QUERY SELECT row_to_json(a) FROM ai_agent_safety.audit_log_since(since) a ORDER BY a.id;
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
