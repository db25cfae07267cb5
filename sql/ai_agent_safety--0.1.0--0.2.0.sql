-- ai_agent_safety 0.1.0 -> 0.2.0 (ALTER EXTENSION ai_agent_safety UPDATE TO '0.2.0').
-- Tokens, audit events and settings are kept as they are: this script only
-- adds what 0.2.0 has and 0.1.0 did not. It must leave the objects exactly
-- as a fresh CREATE EXTENSION at 0.2.0 makes them (tests/upgrade.rs checks).
\echo Use "ALTER EXTENSION ai_agent_safety UPDATE" to load this file. \quit

-- The loaded library's version, to compare with pg_extension.extversion.
CREATE FUNCTION ai_agent_safety."library_version"() RETURNS TEXT
STABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'library_version_wrapper';
