-- Scenario 5, baseline: the same transaction shape run by a non-agent role:
-- the same lookup of a row id and a uuid (set into an unrelated custom setting),
-- then a plain one-row DELETE. No token is needed or consumed.
BEGIN;
SELECT set_config('bench.token', token::text, true) AS tok, id AS rid FROM bench_plain_ids WHERE id = (SELECT nextval('bench_plain_seq')) \gset
DELETE FROM bench_plain WHERE id = :rid;
COMMIT;
