-- Scenario 5, token path: an agent deletes one row with an approval token.
-- Each transaction takes the next token (requested by the agent and granted by
-- a superuser in setup), presents it with set_config(..., true), and runs one
-- protected DELETE, which consumes the token in the same transaction.
BEGIN;
SELECT set_config('ai_agent_safety.approval_token', token::text, true) AS tok, id AS rid FROM bench_tokens WHERE id = (SELECT nextval('bench_tok_seq')) \gset
DELETE FROM bench_del WHERE id = :rid;
COMMIT;
