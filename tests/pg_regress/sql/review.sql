--
-- review: what begin_review says when a transaction cannot be a review.
-- (This cluster has max_prepared_transactions = 0, the server default; the
-- reviews themselves are tested over real connections in tests/review.rs.)
--
\set regdb :DBNAME
\set su :USER

DO $$ BEGIN
    EXECUTE format('CREATE ROLE reg_rv_agent LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '1 hour');
END $$;
CREATE DATABASE reg_rv_prod;
ALTER DATABASE reg_rv_prod SET ai_agent_safety.require_approval = on;
CREATE DATABASE reg_rv_dev;
\c reg_rv_prod :su
CREATE EXTENSION ai_agent_safety;
\c reg_rv_dev :su
CREATE EXTENSION ai_agent_safety;

\c reg_rv_prod reg_rv_agent
-- Outside a transaction block.
SELECT ai_agent_safety.begin_review('reg-rv', 'clean up');
-- Without a task.
BEGIN;
SELECT ai_agent_safety.begin_review(NULL);
ROLLBACK;
-- Without prepared transactions on the server.
SHOW max_prepared_transactions;
BEGIN;
SELECT ai_agent_safety.begin_review('reg-rv', 'clean up');
ROLLBACK;
-- review_ttl is a DBA's.
SET ai_agent_safety.review_ttl = '1d';
\c reg_rv_dev reg_rv_agent
-- Where nothing needs approval there is nothing to review.
BEGIN;
SELECT ai_agent_safety.begin_review('reg-rv', 'clean up');
ROLLBACK;
\c reg_rv_prod :su
-- Not an agent.
BEGIN;
SELECT ai_agent_safety.begin_review('reg-rv', 'clean up');
ROLLBACK;
SELECT count(*) AS pending FROM ai_agent_safety.pending_reviews;

-- Clean up.
\c :regdb :su
DROP DATABASE reg_rv_prod WITH (FORCE);
DROP DATABASE reg_rv_dev WITH (FORCE);
DROP ROLE reg_rv_agent;
