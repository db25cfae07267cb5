-- ai_agent_safety: reviewed transactions (see src/review/ and README,
-- "Reviewed transactions").
--
-- A review's metadata lives in a file beside its prepared transaction
-- ($PGDATA/ai_agent_safety_reviews/), written before PREPARE TRANSACTION
-- and removed when it is committed, rolled back or expired; a review is
-- pending while PostgreSQL still holds its prepared transaction.

CREATE VIEW ai_agent_safety.pending_reviews AS
SELECT p.gid,
       r OPERATOR(pg_catalog.->>) 'requested_by' AS requested_by,
       r OPERATOR(pg_catalog.->>) 'task' AS task_id,
       r OPERATOR(pg_catalog.->>) 'reason' AS reason,
       (r OPERATOR(pg_catalog.->>) 'begun_at')::timestamptz AS begun_at,
       p.prepared,
       (r OPERATOR(pg_catalog.->>) 'expires_at')::timestamptz AS expires_at,
       r OPERATOR(pg_catalog.->) 'statements' AS statements,
       (r OPERATOR(pg_catalog.->>) 'rows')::bigint AS rows,
       pg_catalog.format('COMMIT PREPARED %L;', p.gid) AS to_commit,
       pg_catalog.format('ROLLBACK PREPARED %L;', p.gid) AS to_reject
  FROM ai_agent_safety._reviews() AS r
  JOIN pg_catalog.pg_prepared_xacts p
    ON p.transaction::text OPERATOR(pg_catalog.=) (r OPERATOR(pg_catalog.->>) 'xid')
   AND p.database OPERATOR(pg_catalog.=) pg_catalog.current_database();
COMMENT ON VIEW ai_agent_safety.pending_reviews IS
    'Prepared reviews waiting for an approver: each statement the agent ran and the rows it changed per table; COMMIT PREPARED applies one, ROLLBACK PREPARED rejects it.';

REVOKE ALL ON FUNCTION ai_agent_safety._reviews() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ai_agent_safety._reviews() TO ai_agent_approver;
REVOKE ALL ON ai_agent_safety.pending_reviews FROM PUBLIC;
GRANT SELECT ON ai_agent_safety.pending_reviews TO ai_agent_approver;
