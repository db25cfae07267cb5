-- ai_agent_safety: the recycle bin (see src/recycle/ and README, "Recycle
-- bin").
--
-- What an agent drops is kept for ai_agent_safety.recycle_retention
-- instead of going for good: a dropped database is renamed and closed to
-- connections. Its entry's metadata lives in a file under the data
-- directory, read from every database: an agent drops a database from
-- another one.

-- Rows an agent's TRUNCATE removed, and relations or schemas an agent
-- dropped, kept in this database (copies and moved relations are in
-- schema ai_agent_safety_recycle; a kept schema is renamed).
CREATE TABLE ai_agent_safety.recycled_rows (
    id bigint PRIMARY KEY,
    kind text NOT NULL,
    object text NOT NULL,
    tables jsonb NOT NULL,
    dropped_by text NOT NULL,
    task_id text,
    token uuid,
    statement text,
    at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    rows bigint,
    bytes bigint
);
REVOKE ALL ON ai_agent_safety.recycled_rows FROM PUBLIC;

-- The schema that holds what is kept, made now, by the bootstrap superuser,
-- and not a member of the extension (DROP EXTENSION leaves what it holds).
-- Made here rather than by the first keep: a schema made inside an agent's
-- transaction would make every other agent's first keep wait for that
-- transaction to end (the catalog's unique name), and a transaction kept
-- open for review (PREPARE TRANSACTION) can last for hours.
DO $aas_bin$
DECLARE
    owner oid;
    g text;
BEGIN
    SELECT nspowner INTO owner FROM pg_catalog.pg_namespace
     WHERE nspname OPERATOR(pg_catalog.=) 'ai_agent_safety_recycle';
    IF NOT FOUND THEN
        EXECUTE pg_catalog.format('CREATE SCHEMA ai_agent_safety_recycle AUTHORIZATION %I',
                                  (SELECT rolname FROM pg_catalog.pg_authid
                                    WHERE oid OPERATOR(pg_catalog.=) 10));
        ALTER EXTENSION ai_agent_safety DROP SCHEMA ai_agent_safety_recycle;
        -- A DBA's default privileges for new schemas do not apply here.
        FOR g IN SELECT DISTINCT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                      ELSE pg_catalog.quote_ident(r.rolname) END
                   FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
                   LEFT JOIN pg_catalog.pg_authid r ON r.oid OPERATOR(pg_catalog.=) a.grantee
                  WHERE n.nspname OPERATOR(pg_catalog.=) 'ai_agent_safety_recycle'
                    AND a.grantee OPERATOR(pg_catalog.<>) n.nspowner LOOP
            EXECUTE pg_catalog.format('REVOKE ALL ON SCHEMA ai_agent_safety_recycle FROM %s', g);
        END LOOP;
    ELSIF owner OPERATOR(pg_catalog.<>) 10 THEN
        -- Made before the extension by someone else: what it holds, and
        -- code on it, would be theirs.
        RAISE EXCEPTION 'schema ai_agent_safety_recycle already exists and belongs to role %, not to the bootstrap superuser; the recycle bin cannot keep anything there safely', owner::pg_catalog.regrole
            USING ERRCODE = '42501',
                  HINT = 'Check what it holds and drop it (DROP SCHEMA ai_agent_safety_recycle CASCADE;), then run this command again.';
    END IF;
END
$aas_bin$;

CREATE VIEW ai_agent_safety.recycle_bin AS
SELECT (e OPERATOR(pg_catalog.->>) 'id')::bigint AS id,
       e OPERATOR(pg_catalog.->>) 'kind' AS kind,
       e OPERATOR(pg_catalog.->>) 'object' AS object,
       e OPERATOR(pg_catalog.->>) 'recycled' AS kept_as,
       e OPERATOR(pg_catalog.->>) 'dropped_by' AS dropped_by,
       e OPERATOR(pg_catalog.->>) 'task_id' AS task_id,
       (e OPERATOR(pg_catalog.->>) 'token')::uuid AS token,
       e OPERATOR(pg_catalog.->>) 'statement' AS statement,
       (e OPERATOR(pg_catalog.->>) 'at')::timestamptz AS at,
       (e OPERATOR(pg_catalog.->>) 'expires_at')::timestamptz AS expires_at,
       NULL::bigint AS rows,
       (e OPERATOR(pg_catalog.->>) 'bytes')::bigint AS bytes,
       pg_catalog.format('SELECT ai_agent_safety.restore_dropped(%s);', e OPERATOR(pg_catalog.->>) 'id') AS to_restore
  FROM ai_agent_safety._recycle_bin() AS e
UNION ALL
SELECT r.id, r.kind, r.object, r.tables OPERATOR(pg_catalog.->>) 'kept_as', r.dropped_by, r.task_id, r.token, r.statement, r.at, r.expires_at,
       r.rows, r.bytes, pg_catalog.format('SELECT ai_agent_safety.restore_dropped(%s);', r.id)
  FROM ai_agent_safety.recycled_rows r
 WHERE ai_agent_safety._recycle_bin_readable();
COMMENT ON VIEW ai_agent_safety.recycle_bin IS
    'What agents dropped, kept until expires_at: restore_dropped(id) brings an entry back, purge_dropped(id) lets it go now.';

REVOKE ALL ON FUNCTION ai_agent_safety._recycle_bin() FROM PUBLIC;
REVOKE ALL ON FUNCTION ai_agent_safety._recycle_bin_readable() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ai_agent_safety._recycle_bin_readable() TO ai_agent_approver;
GRANT EXECUTE ON FUNCTION ai_agent_safety._recycle_bin() TO ai_agent_approver;
REVOKE ALL ON ai_agent_safety.recycle_bin FROM PUBLIC;
GRANT SELECT ON ai_agent_safety.recycle_bin TO ai_agent_approver;
REVOKE ALL ON FUNCTION ai_agent_safety.restore_dropped(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ai_agent_safety.restore_dropped(bigint, text) TO ai_agent_approver;
REVOKE ALL ON FUNCTION ai_agent_safety.purge_dropped(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ai_agent_safety.purge_dropped(bigint) TO ai_agent_approver;
