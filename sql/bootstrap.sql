-- ai_agent_safety: runs first in CREATE EXTENSION.
--
-- Refuse to install unless the library is preloaded: without the hooks the
-- database would look protected but not be.
DO $preload$
BEGIN
    IF NOT EXISTS (
        SELECT 1
          FROM pg_catalog.unnest(pg_catalog.string_to_array(pg_catalog.current_setting('shared_preload_libraries'), ',')) AS l(lib)
         WHERE pg_catalog.btrim(l.lib, ' "') IN ('ai_agent_safety', '$libdir/ai_agent_safety')
    ) THEN
        RAISE EXCEPTION 'ai_agent_safety must be loaded through shared_preload_libraries before CREATE EXTENSION'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = pg_catalog.format('shared_preload_libraries is currently %L. Without preloading, the hooks that protect this database would not run in every session.',
                                             pg_catalog.current_setting('shared_preload_libraries')),
                  HINT = 'Add ai_agent_safety to shared_preload_libraries (for example ALTER SYSTEM SET shared_preload_libraries = ''ai_agent_safety''; keeping any libraries already listed), restart PostgreSQL, then run CREATE EXTENSION ai_agent_safety; again.';
    END IF;
END
$preload$;

-- The agent group and the approver group (cluster-wide, created once).
DO $roles$
DECLARE
    agent text := COALESCE(NULLIF(pg_catalog.current_setting('ai_agent_safety.agent_role', true), ''), 'ai_agent');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = agent) THEN
        EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', agent);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'ai_agent_approver') THEN
        CREATE ROLE ai_agent_approver NOLOGIN;
    END IF;
END
$roles$;

-- The schema must be the extension's own: one made earlier by someone else
-- (an agent, say) would let its owner place objects beside the extension's.
DO $schema$
DECLARE
    owner name;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(n.nspowner) INTO owner
      FROM pg_catalog.pg_namespace n WHERE n.nspname = 'ai_agent_safety';
    IF FOUND THEN
        RAISE EXCEPTION 'schema ai_agent_safety already exists (owner %), and ai_agent_safety must create it itself', owner
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'Objects in a schema made by someone else are not the extension''s to trust.',
                  HINT = 'Look at what it holds, then rename or drop it (ALTER SCHEMA ai_agent_safety RENAME TO ai_agent_safety_old;) and run CREATE EXTENSION ai_agent_safety; again.';
    END IF;
END
$schema$;
CREATE SCHEMA ai_agent_safety;
REVOKE ALL ON SCHEMA ai_agent_safety FROM PUBLIC;

-- Everything below names what it uses through pg_catalog and the extension's
-- own schema only: a look-alike another role put in the schema the extension
-- is created in (public.format(text, uuid), say) must not bind into the
-- extension's views and functions. SET LOCAL: CREATE EXTENSION restores
-- the caller's search_path when it ends (a plain SET would outlive it).
SET LOCAL search_path = pg_catalog, pg_temp;
GRANT USAGE ON SCHEMA ai_agent_safety TO ai_agent_approver;
