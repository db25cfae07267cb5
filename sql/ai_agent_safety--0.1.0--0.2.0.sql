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

-- Previews and row caps (issue 14): a request's statement is previewed (a
-- DELETE's or UPDATE's dry run, a TRUNCATE's or DROP's catalog reach), and
-- a token may cap the rows its statement changes.
ALTER TABLE ai_agent_safety.tokens
    ADD COLUMN max_rows bigint CONSTRAINT tokens_max_rows_positive CHECK (max_rows >= 1),
    ADD COLUMN preview jsonb,
    ADD COLUMN preview_rows bigint;

CREATE FUNCTION ai_agent_safety."_preview"(
	"statement" TEXT, /* & str */
	"search_path" TEXT /* & str */
) RETURNS jsonb /* pgrx :: JsonB */
STRICT VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_preview_wrapper';

CREATE FUNCTION ai_agent_safety."_take_preview"(
	"statement" TEXT, /* & str */
	"search_path" TEXT /* & str */
) RETURNS jsonb /* Option < pgrx :: JsonB > */
STRICT VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_take_preview_wrapper';

CREATE FUNCTION ai_agent_safety."_statement_reach"(
	"statement" TEXT /* & str */
) RETURNS TABLE (
	"cascade" bool,  /* bool */
	"children" bool  /* bool */
)
IMMUTABLE STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_statement_reach_wrapper';

-- What a TRUNCATE or DROP would remove, read from the catalogs (nothing
-- runs): the objects, each table with the rows it holds (counted; over
-- 64 MB, the planner's estimate, marked so). Raises the error the statement
-- itself would meet when other objects need a CASCADE it does not have.
CREATE FUNCTION ai_agent_safety._catalog_preview(op text, classid oid, objid oid, statement text,
    OUT preview jsonb, OUT rows bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    reach record;
    r record;
    n bigint;
    estimated boolean;
    items jsonb[] := '{}';
    blockers text;
    rels oid[];
    vias text[];
BEGIN
    rows := 0;
    SELECT * INTO reach FROM ai_agent_safety._statement_reach(statement);
    IF op = 'TRUNCATE' THEN
        WITH RECURSIVE edges(parent, child, via) AS (
            SELECT i.inhparent, i.inhrelid, 'partition or inheritance child' FROM pg_inherits i WHERE reach.children
            UNION ALL
            SELECT c.confrelid, c.conrelid, 'TRUNCATE ... CASCADE (foreign key)' FROM pg_constraint c
             WHERE c.contype = 'f' AND reach.cascade
        ), t(relid, via) AS (
            SELECT _catalog_preview.objid, 'statement'
            UNION
            SELECT e.child, e.via FROM edges e JOIN t ON e.parent = t.relid
        ), one AS (
            SELECT DISTINCT ON (t.relid) t.relid, t.via FROM t ORDER BY t.relid, t.via = 'statement' DESC
        )
        SELECT array_agg(one.relid ORDER BY one.via <> 'statement', one.relid::regclass::text),
               array_agg(one.via ORDER BY one.via <> 'statement', one.relid::regclass::text)
          INTO rels, vias FROM one;
        SELECT string_agg(DISTINCT c.conrelid::regclass::text, ', ') INTO blockers
          FROM pg_constraint c
         WHERE c.contype = 'f' AND c.confrelid = ANY (rels) AND NOT c.conrelid = ANY (rels);
        IF blockers IS NOT NULL THEN
            RAISE EXCEPTION 'the statement cannot be approved as given: it would fail, since % is referenced by a foreign key of %', objid::regclass, blockers
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Truncate the referencing tables in the same statement, or add CASCADE (the preview then lists them).';
        END IF;
        FOR i IN 1 .. array_length(rels, 1) LOOP
            SELECT * INTO n, estimated FROM ai_agent_safety._rows_held(rels[i]);
            rows := rows + COALESCE(n, 0);
            items := items || jsonb_strip_nulls(jsonb_build_object('table', rels[i]::regclass::text, 'relid', rels[i]::bigint, 'rows', n, 'via', vias[i],
                                                                   'estimated', CASE WHEN estimated THEN true END));
        END LOOP;
    ELSIF op = 'DROP' AND classid = 'pg_database'::regclass THEN
        items := ARRAY[jsonb_build_object('object', 'database ' || quote_ident((SELECT datname FROM pg_database WHERE oid = objid)),
                                          'size', pg_size_pretty(pg_database_size(objid)), 'via', 'statement')];
        rows := NULL;
    ELSIF op = 'DROP' THEN
        IF NOT reach.cascade THEN
            SELECT string_agg(DISTINCT pg_describe_object(d.classid, d.objid, 0), ', ') INTO blockers
              FROM pg_depend d
             WHERE d.refclassid = _catalog_preview.classid AND d.refobjid = _catalog_preview.objid AND d.deptype = 'n'
               AND NOT (d.classid = _catalog_preview.classid AND d.objid = _catalog_preview.objid);
            IF blockers IS NOT NULL THEN
                RAISE EXCEPTION 'the statement cannot be approved as given: it would fail, since other objects depend on %: %',
                      pg_describe_object(classid, objid, 0), blockers
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Drop them first, or add CASCADE (the preview then lists them).';
            END IF;
        END IF;
        FOR r IN
            -- What PostgreSQL's DROP would reach: the objects that depend on
            -- a dropped one (automatically, internally, or normally: with
            -- CASCADE), and the object that owns a dropped one internally
            -- (a view, through its rule).
            WITH RECURSIVE edges(fromclass, fromobj, toclass, toobj, deptype) AS (
                SELECT d.refclassid, d.refobjid, d.classid, d.objid, d.deptype FROM pg_depend d
                 WHERE d.deptype IN ('a', 'i') OR (d.deptype = 'n' AND reach.cascade)
                UNION ALL
                SELECT d.classid, d.objid, d.refclassid, d.refobjid, 'o' FROM pg_depend d WHERE d.deptype = 'i'
            ), gone(classid, objid, via) AS (
                SELECT _catalog_preview.classid, _catalog_preview.objid, 'statement'
                UNION
                SELECT e.toclass, e.toobj,
                       CASE WHEN e.deptype = 'n' THEN 'DROP ... CASCADE'
                            WHEN g.via = 'statement' THEN 'with it'
                            ELSE g.via END
                  FROM edges e JOIN gone g ON e.fromclass = g.classid AND e.fromobj = g.objid
                 WHERE NOT (e.toclass = g.classid AND e.toobj = g.objid)
            ), one AS (
                SELECT DISTINCT ON (g.classid, g.objid) g.classid, g.objid, g.via
                  FROM gone g ORDER BY g.classid, g.objid, g.via = 'statement' DESC, g.via = 'with it' DESC
            )
            SELECT o.classid, o.objid, o.via, pg_describe_object(o.classid, o.objid, 0) AS what, c.relkind
              FROM one o
              LEFT JOIN pg_class c ON o.classid = 'pg_class'::regclass AND c.oid = o.objid
              LEFT JOIN pg_trigger tg ON o.classid = 'pg_trigger'::regclass AND tg.oid = o.objid
             -- What a person looks for: the object, the tables that go
             -- (with their rows), and everything CASCADE takes besides; not
             -- the parts of a dropped object (its type, rule, indexes,
             -- constraints, triggers, TOAST).
             WHERE (o.via <> 'with it' OR c.relkind IN ('r', 'm', 'p'))
               AND o.classid NOT IN ('pg_type'::regclass, 'pg_rewrite'::regclass, 'pg_attrdef'::regclass)
               AND COALESCE(c.relkind, '-') <> 't'
               AND NOT COALESCE(tg.tgisinternal, false)
             ORDER BY o.via <> 'statement', 4
        LOOP
            IF r.relkind IN ('r', 'm', 'p') THEN
                SELECT * INTO n, estimated FROM ai_agent_safety._rows_held(r.objid);
                rows := rows + COALESCE(n, 0);
                items := items || jsonb_strip_nulls(jsonb_build_object('table', r.objid::regclass::text, 'relid', r.objid::bigint, 'rows', n, 'via', r.via,
                                                                       'estimated', CASE WHEN estimated THEN true END));
            ELSE
                items := items || jsonb_build_object('object', r.what, 'via', r.via);
            END IF;
        END LOOP;
    ELSE
        preview := NULL;
        rows := NULL;
        RETURN;
    END IF;
    SELECT jsonb_agg(i ORDER BY i->>'via' <> 'statement', ord) INTO preview FROM unnest(items) WITH ORDINALITY AS u(i, ord);
END $$;
REVOKE ALL ON FUNCTION ai_agent_safety._catalog_preview(text, oid, oid, text) FROM PUBLIC;

-- The rows a table holds: counted when it is at most 64 MB, else the
-- planner's estimate (estimated = true).
CREATE FUNCTION ai_agent_safety._rows_held(relid oid, OUT n bigint, OUT estimated boolean)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = relid) NOT IN ('r', 'm', 'p') THEN
        RETURN;  -- a foreign table's rows are another server's
    END IF;
    IF pg_relation_size(relid) <= 64 * 1024 * 1024 THEN
        EXECUTE format('SELECT count(*) FROM ONLY %s', relid::regclass) INTO n;
        estimated := false;
    ELSE
        n := (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = relid);
        estimated := true;
    END IF;
END $$;
REVOKE ALL ON FUNCTION ai_agent_safety._rows_held(oid) FROM PUBLIC;

DROP FUNCTION ai_agent_safety._request_token(text, text, oid, oid, text, text, text, text);
CREATE FUNCTION ai_agent_safety._request_token(operation text, task_id text, classid oid, objid oid, reason text, verb text, statement text, search_path text, max_rows bigint)
RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    op text := ai_agent_safety._operation(operation);
    task text := ai_agent_safety._check_text('task_id', task_id, 200, true);
    why text := ai_agent_safety._check_text('reason', reason, 2000, false);
    form text := ai_agent_safety._check_text('verb', verb, 200, false);
    stmt text := ai_agent_safety._check_text('statement', statement, 100000, false);
    -- Computed here from the text (with pg_catalog first on the caller's
    -- path), never taken from the caller.
    stmt_form text := CASE WHEN stmt IS NOT NULL
                           THEN ai_agent_safety._statement_form(stmt, COALESCE(search_path, '')) END;
    shown text;
    new_id uuid;
    p jsonb;
    p_rows bigint;
    cap bigint := max_rows;
BEGIN
    IF cap IS NOT NULL AND cap < 1 THEN
        RAISE EXCEPTION 'max_rows must be at least 1 (it is %)', cap USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cap IS NOT NULL AND op NOT IN ('DELETE', 'UPDATE') THEN
        RAISE EXCEPTION 'max_rows caps the rows a DELETE or UPDATE changes; a % has no row cap', op
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave max_rows out: with the statement, the preview shows what it would remove.';
    END IF;
    IF (classid IS NULL) <> (objid IS NULL) THEN
        RAISE EXCEPTION 'target is incomplete' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF classid IS NOT NULL THEN
        -- Derived here, never taken from the caller: the approver sees the real object.
        shown := ai_agent_safety._target_text(classid, objid);
        IF shown IS NULL THEN
            RAISE EXCEPTION 'target object does not exist' USING ERRCODE = 'undefined_object';
        END IF;
    END IF;
    -- A role is a target only for DROP OWNED BY: the token names that form.
    IF classid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND form IS NULL THEN
        form := 'DROP OWNED BY';
    END IF;
    -- The preview. A DELETE's or UPDATE's is its dry run, made by
    -- request_approval_token as the requester and kept in this backend,
    -- never taken from the caller; a TRUNCATE's or DROP's is read here.
    IF stmt IS NOT NULL AND op IN ('DELETE', 'UPDATE') THEN
        p := ai_agent_safety._take_preview(stmt, COALESCE(search_path, ''));
        IF p IS NULL THEN
            RAISE EXCEPTION 'the statement has no preview; request it with ai_agent_safety.request_approval_token, which makes one'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        p_rows := (p->>'rows')::bigint;
        p := p->'preview';
        -- With a preview and no cap given, the cap is what it counted.
        cap := COALESCE(cap, greatest(p_rows, 1));
    ELSIF stmt IS NOT NULL AND op IN ('TRUNCATE', 'DROP') AND classid IS NOT NULL THEN
        SELECT cp.preview, cp.rows INTO p, p_rows
          FROM ai_agent_safety._catalog_preview(op, classid, objid, stmt) cp;
    END IF;
    INSERT INTO ai_agent_safety.tokens (requested_by, operation, target_classid, target_objid, target_text, verb, task_id, reason,
                                        statement, statement_form, max_rows, preview, preview_rows)
    VALUES (session_user, op, classid, objid, shown, form, task, why, stmt, stmt_form, cap, p, p_rows)
    RETURNING id INTO new_id;
    -- Any role can NOTIFY this channel, so a listener must take nothing from
    -- a payload on trust: the statement and the preview's total are there to
    -- read at a glance, and the request itself is read from
    -- ai_agent_safety.pending_requests.
    PERFORM pg_notify('ai_agent_safety_requests',
                      json_strip_nulls(json_build_object('token', new_id, 'database', current_database(),
                          'operation', op, 'target', shown,
                          'statement', CASE WHEN length(stmt) > 1000 THEN left(stmt, 1000) || '...' ELSE stmt END,
                          'preview_rows', p_rows, 'max_rows', cap,
                          'preview', CASE WHEN jsonb_array_length(p) > 10
                                          THEN (SELECT jsonb_agg(e) FROM (SELECT e FROM jsonb_array_elements(p) e LIMIT 10) x)
                                          ELSE p END))::text);
    PERFORM ai_agent_safety._audit('token', 'requested', 'info', op, COALESCE(shown, 'any object'),
        format('%s requested approval for one %s on %s (task %s)%s%s%s', session_user, op,
               COALESCE(shown, 'any object in database ' || current_database()), task,
               COALESCE(': ' || why, ''),
               CASE WHEN p IS NOT NULL THEN format('; preview: %s rows in %s tables or objects', COALESCE(p_rows::text, 'no'), jsonb_array_length(p)) ELSE '' END,
               CASE WHEN cap IS NOT NULL THEN format('; cap: %s rows', cap) ELSE '' END),
        new_id);
    RETURN new_id;
END $$;
REVOKE ALL ON FUNCTION ai_agent_safety._request_token(text, text, oid, oid, text, text, text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ai_agent_safety._request_token(text, text, oid, oid, text, text, text, text, bigint) TO PUBLIC;

DROP FUNCTION ai_agent_safety.request_approval_token(text, text, text, text, text, text);
CREATE FUNCTION ai_agent_safety.request_approval_token(operation text, task_id text, target text DEFAULT NULL, reason text DEFAULT NULL, statement text DEFAULT NULL, verb text DEFAULT NULL, max_rows bigint DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    r record;
    s record;
    path text := pg_catalog.replace(pg_catalog.current_setting('search_path'), '"$user"',
                                    pg_catalog.quote_ident(current_user::text));
BEGIN
    -- The request is a row, and a read-only transaction cannot write one.
    IF pg_catalog.current_setting('transaction_read_only')::boolean THEN
        RAISE EXCEPTION 'request_approval_token cannot record a request in a read-only transaction; call it in a read-write transaction'
            USING ERRCODE = 'read_only_sql_transaction',
                  DETAIL = 'This transaction is read-only (BEGIN READ ONLY, SET TRANSACTION READ ONLY or default_transaction_read_only), as some clients make every call. A client that can only read cannot run the approved statement either.',
                  HINT = 'Call SELECT ai_agent_safety.request_approval_token(...); outside a read-only transaction, then send the approved statement with its token in one call: <statement> /*ai_agent_safety_token=''<token id>''*/';
    END IF;
    r := ai_agent_safety._resolve_target(target);
    -- With the statement itself, the token is bound to it: read here, as the
    -- caller (its names resolve through the caller's search_path), it must
    -- perform the requested operation, on the target if one is named.
    IF statement IS NOT NULL THEN
        IF length(statement) > 100000 THEN
            RAISE EXCEPTION 'statement is too long (% characters; at most 100000)', length(statement)
                USING ERRCODE = 'string_data_right_truncation';
        END IF;
        -- A row per class the statement performs (a MERGE may both delete
        -- and update): the requested one, if it is among them.
        SELECT f.* INTO s FROM ai_agent_safety._statement_facts(statement) f
         ORDER BY f.operation OPERATOR(pg_catalog.=) ai_agent_safety._operation(request_approval_token.operation) DESC LIMIT 1;
        IF s.operation <> ai_agent_safety._operation(operation) THEN
            RAISE EXCEPTION 'the statement is a %, but the request is for %', s.operation, ai_agent_safety._operation(operation)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Request it as %s: SELECT ai_agent_safety.request_approval_token(%L::text, ...).', s.operation, s.operation);
        END IF;
        IF r.classid IS NULL THEN
            r.classid := s.classid;
            r.objid := s.objid;
        ELSIF (r.classid, r.objid) IS DISTINCT FROM (s.classid, s.objid) THEN
            RAISE EXCEPTION 'the statement acts on %, but the request names %',
                  ai_agent_safety._target_text(s.classid, s.objid), ai_agent_safety._target_text(r.classid, r.objid)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Name the object the statement acts on, or leave the target out: it is taken from the statement.';
        END IF;
        -- A DELETE's or UPDATE's preview: its dry run, as the caller, rolled
        -- back (an error here creates no token).
        IF s.operation IN ('DELETE', 'UPDATE') AND (max_rows IS NULL OR max_rows >= 1) THEN
            PERFORM ai_agent_safety._preview(statement, path);
        END IF;
    END IF;
    -- The caller's search_path, with "$user" spelled out (the form is read
    -- inside a function that runs as the extension's owner).
    RETURN ai_agent_safety._request_token(operation, task_id, r.classid, r.objid, reason, verb, statement, path, max_rows);
END $$;
COMMENT ON FUNCTION ai_agent_safety.request_approval_token(text, text, text, text, text, text, bigint) IS
    'Ask a human for approval of one protected statement (with statement: bound to exactly that statement, and previewed); returns the token id. NOTIFY ai_agent_safety_requests tells approvers.';

DROP FUNCTION @extschema@.request_approval_token(text, text, text, text, text, text);
CREATE FUNCTION @extschema@.request_approval_token(operation text, task_id text, target text DEFAULT NULL, reason text DEFAULT NULL, statement text DEFAULT NULL, verb text DEFAULT NULL, max_rows bigint DEFAULT NULL)
RETURNS uuid LANGUAGE sql AS $$
    SELECT ai_agent_safety.request_approval_token(operation, task_id, target, reason, statement, verb, max_rows)
$$;
COMMENT ON FUNCTION @extschema@.request_approval_token(text, text, text, text, text, text, bigint) IS
    'ai_agent_safety.request_approval_token, callable unqualified.';

DROP FUNCTION ai_agent_safety.grant_approval_token(uuid, text);
DROP FUNCTION ai_agent_safety._decide(uuid, text, text, text);
CREATE FUNCTION ai_agent_safety._decide(token uuid, new_state text, comment text, action text, max_rows bigint DEFAULT NULL)
RETURNS ai_agent_safety.tokens LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t ai_agent_safety.tokens;
BEGIN
    IF token IS NULL THEN
        RAISE EXCEPTION 'token is required' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM ai_agent_safety._assert_approver(action);
    SELECT * INTO t FROM ai_agent_safety.tokens WHERE id = token FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'approval token % does not exist in database "%"', token, current_database()
            USING ERRCODE = 'no_data_found';
    END IF;
    IF t.requested_by = session_user THEN
        RAISE EXCEPTION 'role "%" may not % its own request %', session_user, action, token
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The requester can never decide its own request (separation of duties).',
                  HINT = 'Ask a different approver.';
    END IF;
    IF t.state <> 'pending' THEN
        RAISE EXCEPTION 'approval token % is not pending: it is %', token, ai_agent_safety._status(t)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('It was %s by %s at %s.', t.state, COALESCE(t.decided_by, t.requested_by),
                                  COALESCE(t.decided_at, t.requested_at));
    END IF;
    -- An approver may set a cap, or lower the one the request has.
    IF max_rows IS NOT NULL THEN
        IF max_rows < 1 THEN
            RAISE EXCEPTION 'max_rows must be at least 1 (it is %)', max_rows USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF t.operation NOT IN ('DELETE', 'UPDATE') THEN
            RAISE EXCEPTION 'max_rows caps the rows a DELETE or UPDATE changes; approval token % is for a %', token, t.operation
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF max_rows > t.max_rows THEN
            RAISE EXCEPTION 'max_rows can only lower the cap of approval token % (% rows), not raise it to %', token, t.max_rows, max_rows
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Grant it as it is, or deny it and let the agent request a new one with a higher max_rows.';
        END IF;
    END IF;
    UPDATE ai_agent_safety.tokens
       SET state = new_state,
           decided_by = session_user,
           decided_at = clock_timestamp(),
           decision_comment = comment,
           max_rows = COALESCE(_decide.max_rows, tokens.max_rows),
           expires_at = CASE WHEN new_state = 'granted'
                             THEN clock_timestamp() + current_setting('ai_agent_safety.token_ttl')::interval
                        END
     WHERE id = token
     RETURNING * INTO t;
    -- The requester may LISTEN for its decision; as with requests, the
    -- payload is only the token id and the database (any role can NOTIFY):
    -- read the decision with ai_agent_safety.approval_token_status.
    PERFORM pg_notify('ai_agent_safety_decisions',
                      json_build_object('token', t.id, 'database', current_database())::text);
    PERFORM ai_agent_safety._audit('token', new_state, 'info', t.operation, COALESCE(t.target_text, 'any object'),
        format('%s %s the request of %s for one %s on %s (task %s)%s%s', session_user, new_state, t.requested_by,
               t.operation, COALESCE(t.target_text, 'any object'), t.task_id, COALESCE(': ' || comment, ''),
               CASE WHEN new_state = 'granted' AND t.max_rows IS NOT NULL THEN format('; cap: %s rows', t.max_rows) ELSE '' END),
        t.id);
    RETURN t;
END $$;
REVOKE ALL ON FUNCTION ai_agent_safety._decide(uuid, text, text, text, bigint) FROM PUBLIC;

CREATE FUNCTION ai_agent_safety.grant_approval_token(token uuid, comment text DEFAULT NULL, max_rows bigint DEFAULT NULL)
RETURNS timestamptz LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (ai_agent_safety._decide(token, 'granted', ai_agent_safety._check_text('comment', comment, 2000, false), 'grant',
                                    max_rows)).expires_at;
END $$;
COMMENT ON FUNCTION ai_agent_safety.grant_approval_token(uuid, text, bigint) IS
    'Approve a pending request; the token is usable once, until the returned time (ai_agent_safety.token_ttl). max_rows sets or lowers its row cap.';

CREATE OR REPLACE VIEW ai_agent_safety.approval_tokens AS
SELECT t.id AS token, ai_agent_safety._status(t) AS status, t.database, t.requested_by, t.requested_at,
       t.operation, t.verb, COALESCE(t.target_text, 'any object in database ' || t.database) AS target,
       t.task_id, t.reason, t.decided_by, t.decided_at, t.decision_comment AS comment,
       t.expires_at, t.used_at, t.used_by_pid, t.used_statement, t.statement,
       t.max_rows, t.preview_rows, t.preview
  FROM ai_agent_safety.tokens t
 WHERE NOT ai_agent_safety.session_is_agent();

DROP VIEW ai_agent_safety.pending_requests;
CREATE VIEW ai_agent_safety.pending_requests AS
SELECT t.id AS token, t.requested_by, t.requested_at,
       date_trunc('second', clock_timestamp() - t.requested_at) AS waiting,
       t.operation, COALESCE(t.target_text, 'any object in database ' || t.database) AS target,
       t.target_objid AS target_oid, f.owner AS target_owner,
       pg_size_pretty(f.size_bytes) AS target_size, f.estimated_rows AS target_estimated_rows,
       f.earlier_names AS target_earlier_names,
       t.task_id, t.reason,
       format('%s may run one %s on %s in database %s, within %s of the grant',
              t.requested_by, COALESCE(t.verb || ' (' || t.operation || ')', t.operation),
              COALESCE(t.target_text, 'any object') || COALESCE(', exactly this statement: ' || t.statement, '')
                  || COALESCE(', changing at most ' || t.max_rows || ' rows', ''), t.database,
              current_setting('ai_agent_safety.token_ttl')) AS would_allow,
       t.verb,
       t.statement,
       t.preview,
       t.preview_rows,
       t.max_rows,
       format('SELECT ai_agent_safety.grant_approval_token(%L::uuid);', t.id) AS grant_sql,
       format('SELECT ai_agent_safety.deny_approval_token(%L::uuid, %L::text);', t.id, '<reason>') AS deny_sql
  FROM ai_agent_safety.tokens t
  LEFT JOIN LATERAL ai_agent_safety._target_facts(t.target_classid, t.target_objid) f ON true
 WHERE t.state = 'pending' AND NOT ai_agent_safety.session_is_agent()
 ORDER BY t.requested_at;
REVOKE ALL ON ai_agent_safety.pending_requests FROM PUBLIC;
GRANT SELECT ON ai_agent_safety.pending_requests TO ai_agent_approver;

-- Reviewed transactions (issue 14, part 4): an agent's transaction is
-- reviewed by an approver, who commits it with COMMIT PREPARED.
CREATE FUNCTION ai_agent_safety."begin_review"(
	"task_id" TEXT, /* Option < & str > */
	"reason" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TEXT /* String */
VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'begin_review_wrapper';

CREATE FUNCTION ai_agent_safety."_reviews"() RETURNS SETOF jsonb /* pgrx :: JsonB */
STRICT VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_reviews_wrapper';

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

-- The recycle bin (issue 15): an agent's DROP DATABASE keeps the database.
CREATE FUNCTION ai_agent_safety."_recycle_bin"() RETURNS SETOF jsonb /* pgrx :: JsonB */
STRICT VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_recycle_bin_wrapper';

CREATE FUNCTION ai_agent_safety."restore_dropped"(
	"id" bigint, /* i64 */
	"new_name" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TEXT /* String */
VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'restore_dropped_wrapper';

CREATE FUNCTION ai_agent_safety."_recycle_bin_readable"() RETURNS bool /* bool */
STRICT VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_recycle_bin_readable_wrapper';

CREATE FUNCTION ai_agent_safety."purge_dropped"(
	"id" bigint /* i64 */
) RETURNS TEXT /* String */
STRICT VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'purge_dropped_wrapper';

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

-- The audit log becomes the view audit_log over two tables (see audit.sql):
-- audit_row, which is 0.1.0's table renamed, its events and ids kept, and
-- audit_batch, where the writer now stores spooled events many to a row.
-- Views and functions of a DBA's that read 0.1.0's table follow the rename
-- (as agent_activity does, replaced below): they are named in a warning,
-- since from now on they see only the events kept one to a row.
DO $$
DECLARE
    deps text;
BEGIN
    SELECT pg_catalog.string_agg(DISTINCT o, ', ') INTO deps
      FROM (SELECT v.oid::regclass::text AS o
              FROM pg_catalog.pg_depend d
              JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
              JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
             WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass
               AND d.refobjid = 'ai_agent_safety.audit_log'::regclass
               AND v.oid <> 'ai_agent_safety.agent_activity'::regclass
            UNION ALL
            SELECT d.objid::regprocedure::text
              FROM pg_catalog.pg_depend d
             WHERE d.classid = 'pg_catalog.pg_proc'::regclass
               AND d.refobjid = 'ai_agent_safety.audit_log'::regclass) x;
    IF deps IS NOT NULL THEN
        RAISE WARNING 'these read ai_agent_safety.audit_log, which 0.2.0 renames to ai_agent_safety.audit_row: %', deps
            USING DETAIL = 'From now on they see only the events kept one to a row, not the audit writer''s batches.',
                  HINT = 'Make them read the view ai_agent_safety.audit_log again, with CREATE OR REPLACE VIEW (or FUNCTION).';
    END IF;
END $$;
ALTER TABLE ai_agent_safety.audit_log RENAME TO audit_row;
ALTER SEQUENCE ai_agent_safety.audit_log_id_seq RENAME TO audit_row_id_seq;
ALTER INDEX ai_agent_safety.audit_log_pkey RENAME TO audit_row_pkey;
ALTER TRIGGER audit_log_append_only ON ai_agent_safety.audit_row RENAME TO audit_row_append_only;
ALTER TRIGGER audit_log_no_truncate ON ai_agent_safety.audit_row RENAME TO audit_row_no_truncate;
-- PostgreSQL 18 names NOT NULL constraints (audit_log_ts_not_null, ...):
-- named after the table, as a fresh install names them.
DO $$
DECLARE
    c name;
BEGIN
    FOR c IN
        SELECT conname FROM pg_catalog.pg_constraint
         WHERE conrelid = 'ai_agent_safety.audit_row'::regclass
           AND pg_catalog.starts_with(conname, 'audit_log_')
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE ai_agent_safety.audit_row RENAME CONSTRAINT %I TO %I',
                                  c, 'audit_row_' || pg_catalog.substr(c, 11));
    END LOOP;
END $$;
ALTER SEQUENCE ai_agent_safety.audit_row_id_seq INCREMENT BY 1024;
-- The time index becomes BRIN: what each event costs the writer.
DROP INDEX ai_agent_safety.audit_log_ts;
CREATE INDEX audit_row_ts ON ai_agent_safety.audit_row USING brin (ts);
COMMENT ON TABLE ai_agent_safety.audit_row IS
    'Audit events one to a row (written inside a transaction, or from before 0.2.0); read them through ai_agent_safety.audit_log.';

CREATE FUNCTION ai_agent_safety."_audit_events"(
	"rows" bytea, /* & [u8] */
	"first_id" bigint /* i64 */
) RETURNS TABLE (
	"id" bigint,  /* i64 */
	"ts" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"database" TEXT,  /* Option < String > */
	"pid" INT,  /* Option < i32 > */
	"client_addr" TEXT,  /* Option < String > */
	"application_name" TEXT,  /* Option < String > */
	"session_user_name" TEXT,  /* Option < String > */
	"current_user_name" TEXT,  /* Option < String > */
	"task_id" TEXT,  /* Option < String > */
	"source" TEXT,  /* Option < String > */
	"event" TEXT,  /* Option < String > */
	"decision" TEXT,  /* Option < String > */
	"operation" TEXT,  /* Option < String > */
	"object" TEXT,  /* Option < String > */
	"statement" TEXT,  /* Option < String > */
	"reason" TEXT,  /* Option < String > */
	"token" uuid  /* Option < pgrx :: Uuid > */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_audit_events_wrapper';

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

REVOKE ALL ON ai_agent_safety.audit_log, ai_agent_safety.audit_batch FROM PUBLIC;
GRANT SELECT ON ai_agent_safety.audit_log, ai_agent_safety.audit_row,
    ai_agent_safety.audit_batch TO ai_agent_approver;
-- Who reads the view unpacks batches with this (as themselves); nobody
-- else needs it.
REVOKE ALL ON FUNCTION ai_agent_safety._audit_events(bytea, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ai_agent_safety._audit_events(bytea, bigint) TO ai_agent_approver;
-- Whoever a DBA let read 0.1.0's table (a SIEM's role, the console's watch
-- role) still reads the log: the grant came along with the rename to
-- audit_row, and is made on the view and on audit_batch too.
DO $$
DECLARE
    g regrole;
BEGIN
    FOR g IN
        SELECT DISTINCT a.grantee::regrole
          FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) a
         WHERE c.oid = 'ai_agent_safety.audit_row'::regclass
           AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner AND a.grantee <> 0
    LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON ai_agent_safety.audit_log, ai_agent_safety.audit_batch TO %s', g);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION ai_agent_safety._audit_events(bytea, bigint) TO %s', g);
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION ai_agent_safety._audit_append_only()
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

CREATE OR REPLACE FUNCTION ai_agent_safety.audit_log_json(since timestamptz)
RETURNS SETOF json LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF since IS NULL THEN
        RAISE EXCEPTION 'since is required' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'For everything: SELECT * FROM ai_agent_safety.audit_log_json(''-infinity''::timestamptz);';
    END IF;
    RETURN QUERY SELECT row_to_json(a) FROM ai_agent_safety.audit_log_since(since) a ORDER BY a.id;
END $$;
-- The same view, now over the view audit_log: its grants (a DBA's too)
-- and whatever depends on it are kept.
CREATE OR REPLACE VIEW ai_agent_safety.agent_activity AS
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

