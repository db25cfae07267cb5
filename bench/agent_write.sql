-- Scenario 4: an agent's write workload in a protected database.
-- INSERT and UPDATE on tables the agent owns. UPDATE is not in the default
-- ai_agent_safety.protected_operations (DROP, DELETE, TRUNCATE), so nothing is
-- refused, but every statement goes through the extension's hooks.
\set aid random(1, :accounts)
\set delta random(-5000, 5000)
BEGIN;
UPDATE bench_agent_acc SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM bench_agent_acc WHERE aid = :aid;
INSERT INTO bench_agent_hist (aid, delta, mtime) VALUES (:aid, :delta, CURRENT_TIMESTAMP);
END;
