//! The statement a token is bound to: checked to be one statement, read
//! for what it does (its operation class and its object, resolved as the
//! requesting role), and compared by its form (`aas_policy::statement_form`).

use pgrx::pg_sys;
use std::ffi::CString;

/// Is `sql` exactly one statement?
pub fn is_one_statement(sql: &str) -> bool {
    one_statement(sql).is_ok()
}

/// The form of the one statement in `sql`, as it reads in this session now;
/// `Err` when `sql` holds no statement or several, or binds parameters.
///
/// A DELETE, UPDATE, MERGE or INSERT is compared by its analysed tree
/// (PostgreSQL prints that one): the objects, operators and functions its
/// names resolve to, with the constants. So an operator an agent put ahead
/// of pg_catalog on its search_path (`CREATE OPERATOR public.= ...`) makes
/// another form. Other statements, whose trees PostgreSQL 15 cannot print,
/// are compared by their lexical form; their object is checked by identity
/// besides.
pub fn of(sql: &str) -> Result<String, String> {
    let raw = one_statement(sql)?;
    form(raw, sql)
}

fn form(raw: *mut pg_sys::RawStmt, sql: &str) -> Result<String, String> {
    // Lexed as this session's parser lexes it (standard_conforming_strings
    // can be turned off by anyone, for their own session).
    // SAFETY: reads a backend variable.
    let lexical =
        aas_policy::statement_form::of_with(sql, unsafe { pg_sys::standard_conforming_strings });
    // SAFETY: raw is a valid RawStmt.
    let tag = unsafe { (*(*raw).stmt).type_ };
    if !matches!(
        tag,
        pg_sys::NodeTag::T_DeleteStmt
            | pg_sys::NodeTag::T_UpdateStmt
            | pg_sys::NodeTag::T_MergeStmt
            | pg_sys::NodeTag::T_InsertStmt
    ) {
        // The lexical form is only as good as the lexer: where PostgreSQL's
        // own scanner starts its tokens elsewhere (a U& string, a string
        // continued on the next line, a prefix the lexer does not know),
        // the approver would read one statement and PostgreSQL run another.
        // SAFETY: reads a backend variable.
        let standard = unsafe { pg_sys::standard_conforming_strings };
        if aas_policy::statement_form::token_starts(sql, standard) != scanner_token_starts(sql)? {
            return Err("PostgreSQL reads its text differently from how it reads to a person (a U& string or name, a string continued on the next line, or another rare form); write it plainly".into());
        }
        return Ok(lexical);
    }
    if lexical
        .split(' ')
        .any(|t| t.len() > 1 && t.starts_with('$') && t[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(
            "it binds parameters; a bound token covers the statement with its values written in"
                .into(),
        );
    }
    let c = CString::new(sql).map_err(|_| "the statement contains a NUL byte".to_string())?;
    // SAFETY: parse analysis of a raw statement with no parameters, in the
    // current transaction (it raises a PostgreSQL error when names do not
    // resolve); nodeToString prints the analysed Query.
    let (printed, target) = unsafe {
        let query = pg_sys::parse_analyze_fixedparams(
            raw,
            c.as_ptr(),
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        );
        // The table it writes (its result relation).
        let rti = (*query).resultRelation;
        let target = (rti > 0)
            .then(|| crate::pg::list_nth((*query).rtable, rti as usize - 1))
            .filter(|r| !r.is_null())
            .map(|r| (*(r as *const pg_sys::RangeTblEntry)).relid);
        let s = pg_sys::nodeToString(query as *const std::ffi::c_void);
        (
            std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned(),
            target,
        )
    };
    // An operator or function that is not PostgreSQL's own can win over
    // the built-in one (an exact type match beats a conversion), and the
    // approver, reading `=` or `round()`, cannot see it: such a statement is
    // not bound (and a statement using one never matches).
    for field in [
        ":opno ",
        ":opfuncid ",
        ":funcid ",
        ":aggfnoid ",
        ":winfnoid ",
    ] {
        for (i, _) in printed.match_indices(field) {
            let rest = &printed[i + field.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if rest[..end]
                .parse::<u32>()
                .is_ok_and(|oid| oid >= pg_sys::FirstNormalObjectId)
            {
                return Err(format!(
                    "it calls an operator or function that is not PostgreSQL's own (oid {}); a token is bound only to statements whose operators and functions are built in",
                    &rest[..end]
                ));
            }
        }
    }
    // The table's own code takes part in the effect: a trigger added after
    // the approval can change which row an upsert updates, or what an
    // UPDATE writes. Its fingerprint is part of the form.
    let code = target.map(table_code).unwrap_or_default();
    Ok(format!(
        "{}{}{code}",
        without_positions(&printed),
        aas_policy::statement_form::TABLE_CODE
    ))
}

/// A fingerprint of what runs when table `relid` is written, besides the
/// statement: the triggers (with their functions' source, settings, owner
/// and SECURITY DEFINER), rules, column defaults, the defaults and checks
/// of its columns' domains, and its row security (on, forced, and each
/// policy with its roles) of the table and of its partitions and
/// inheritance children; and, when a trigger function sets no search_path
/// of its own (so the names in its body are looked up when it runs), the
/// schemas the session searches. (Functions a trigger function calls are
/// not followed.)
fn table_code(relid: pg_sys::Oid) -> String {
    // The schemas this session searches, as names (its own temporary
    // schema left out: another session has another).
    let path = pgrx::spi::Spi::get_one::<String>(
        "SELECT pg_catalog.array_to_string(ARRAY(SELECT s FROM pg_catalog.unnest(pg_catalog.current_schemas(true)) s
                                                WHERE s::text NOT LIKE 'pg\\_temp%'), ',')",
    )
    .ok()
    .flatten()
    .unwrap_or_default();
    crate::privileged::run(|| {
        pgrx::spi::Spi::get_one_with_args::<String>(
            "WITH RECURSIVE rels(oid) AS (
               SELECT $1::pg_catalog.oid
               UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN rels r ON i.inhparent = r.oid)
             SELECT COALESCE(md5(string_agg(x, E'\\n' ORDER BY x)), 'none') FROM (
               SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text || ' '
                      || pg_catalog.md5(p.prosrc) || ' ' || COALESCE(pg_catalog.array_to_string(p.proconfig, ','), '')
                      || ' ' || p.prosecdef::text || ' ' || p.proowner::text
                 FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
                WHERE t.tgrelid IN (SELECT oid FROM rels) AND NOT t.tgisinternal
               UNION ALL
               SELECT 'path ' || $2
                WHERE EXISTS (SELECT FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
                               WHERE t.tgrelid IN (SELECT oid FROM rels) AND NOT t.tgisinternal
                                 AND NOT COALESCE(p.proconfig::text LIKE '%search_path=%', false))
               UNION ALL
               SELECT 'rls ' || c.oid::text || ' ' || c.relrowsecurity::text || ' ' || c.relforcerowsecurity::text
                 FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT oid FROM rels)
               UNION ALL
               SELECT 'domain ' || a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod) || ' '
                      || COALESCE(ty.typdefault, '') || ' '
                      || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.pg_get_constraintdef(k.oid), ',' ORDER BY k.conname)
                                     FROM pg_catalog.pg_constraint k WHERE k.contypid = ty.oid), '')
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
                WHERE a.attrelid IN (SELECT oid FROM rels) AND ty.typtype = 'd' AND a.attnum > 0 AND NOT a.attisdropped
               UNION ALL
               SELECT 'rule ' || pg_catalog.pg_get_ruledef(r.oid) FROM pg_catalog.pg_rewrite r WHERE r.ev_class IN (SELECT oid FROM rels)
               UNION ALL
               SELECT 'default ' || a.attname || ' ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                 FROM pg_catalog.pg_attrdef d
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                WHERE d.adrelid IN (SELECT oid FROM rels)
               UNION ALL
               SELECT 'policy ' || pol.polname || ' ' || pol.polcmd::text || ' ' || pol.polpermissive::text || ' '
                      || COALESCE((SELECT pg_catalog.string_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_catalog.pg_get_userbyid(r)::text END, ',' ORDER BY 1)
                                     FROM pg_catalog.unnest(pol.polroles) r), '') || ' '
                      || COALESCE(pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), '') || ' '
                      || COALESCE(pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid), '')
                 FROM pg_catalog.pg_policy pol WHERE pol.polrelid IN (SELECT oid FROM rels)
             ) s(x)",
            &[relid.into(), path.as_str().into()],
        )
        .ok()
        .flatten()
        .unwrap_or_else(|| "unreadable".into())
    })
}

/// Where PostgreSQL's own scanner (the parser's, with this session's
/// settings: standard_conforming_strings, backslash_quote) starts each token.
fn scanner_token_starts(sql: &str) -> Result<Vec<usize>, String> {
    let c = CString::new(sql).map_err(|_| "the statement contains a NUL byte".to_string())?;
    let mut starts = Vec::new();
    // SAFETY: the scanner reads the NUL-terminated text with the parser's
    // keywords; core_yylex returns 0 at the end and raises a PostgreSQL
    // error for text it cannot scan (the raw parse before this did not).
    unsafe {
        let mut extra: pg_sys::core_yy_extra_type = std::mem::zeroed();
        let scanner = pg_sys::scanner_init(
            c.as_ptr(),
            &mut extra,
            std::ptr::addr_of!(pg_sys::ScanKeywords),
            std::ptr::addr_of!(pg_sys::ScanKeywordTokens) as *const u16,
        );
        loop {
            let mut value: pg_sys::core_YYSTYPE = std::mem::zeroed();
            let mut location: std::ffi::c_int = 0;
            if pg_sys::core_yylex(&mut value, &mut location, scanner) == 0 {
                break;
            }
            starts.push(location.max(0) as usize);
        }
        pg_sys::scanner_finish(scanner);
    }
    Ok(starts)
}

/// The printed tree without its source positions (`:location N`,
/// `:stmt_location N`, `:stmt_len N`).
fn without_positions(tree: &str) -> String {
    let mut out = tree.to_string();
    for field in [" :location ", " :stmt_location ", " :stmt_len "] {
        let mut kept = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(field) {
            kept.push_str(&rest[..i]);
            let after = &rest[i + field.len()..];
            let end = after
                .find(|c: char| !(c.is_ascii_digit() || c == '-'))
                .unwrap_or(after.len());
            rest = &after[end..];
        }
        kept.push_str(rest);
        out = kept;
    }
    out
}

/// The one raw statement of `sql`.
fn one_statement(sql: &str) -> Result<*mut pg_sys::RawStmt, String> {
    let c = CString::new(sql).map_err(|_| "the statement contains a NUL byte".to_string())?;
    // SAFETY: raw_parser reads the NUL-terminated text and returns a List of
    // RawStmt in the current memory context (or raises a syntax error).
    let list = unsafe { pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT) };
    let n = if list.is_null() {
        0
    } else {
        // SAFETY: a non-NIL result is a valid List.
        unsafe { (*list).length }
    };
    if n != 1 {
        return Err(format!(
            "it must be exactly one statement, and it holds {n}"
        ));
    }
    // SAFETY: its one element is a RawStmt.
    Ok(unsafe { pg_sys::list_nth(list, 0) as *mut pg_sys::RawStmt })
}

/// The form the approver means, for a request made with `caller_path` as
/// its search_path: read with pg_catalog first, as a person reads `=` or
/// `lower()`, whatever the requester put ahead of it. The use compares it
/// with the form under the agent's own path.
pub fn for_request(sql: &str, caller_path: &str) -> Result<String, String> {
    // The approver reads the statement as the default lexer reads it; with
    // standard_conforming_strings off, PostgreSQL would read some of it as
    // something else (`'a\' /* '` is one string then).
    // SAFETY: reads a backend variable.
    if !unsafe { pg_sys::standard_conforming_strings } {
        return Err("it is requested with standard_conforming_strings off, where PostgreSQL reads a backslash in a string unlike how the approver reads it; SET standard_conforming_strings = on; and request again".into());
    }
    let raw = one_statement(sql)?;
    let path = if caller_path.trim().is_empty() {
        "pg_catalog".to_string()
    } else {
        format!("pg_catalog, {caller_path}")
    };
    crate::pg::with_search_path(&path, || form(raw, sql))?
}

/// What a statement given with a request does: the operation classes it
/// performs (a MERGE may both delete and update) and the object it does
/// them to (resolved now, as the requesting role, through its
/// search_path).
pub struct Requested {
    pub classes: Vec<&'static str>,
    pub target: (pg_sys::Oid, pg_sys::Oid),
}

/// The classes a MERGE performs, from its WHEN clauses (its inserts are
/// not a protected class).
///
/// # Safety
/// `m` is a valid raw MergeStmt.
unsafe fn merge_classes(m: *mut pg_sys::MergeStmt) -> Vec<&'static str> {
    let mut classes = Vec::new();
    // SAFETY: per this function's contract, its clauses are MergeWhenClauses.
    for w in unsafe { crate::pg::list_ptrs((*m).mergeWhenClauses) } {
        let class = match unsafe { (*(w as *mut pg_sys::MergeWhenClause)).commandType } {
            pg_sys::CmdType::CMD_DELETE => "DELETE",
            pg_sys::CmdType::CMD_UPDATE => "UPDATE",
            _ => continue,
        };
        if !classes.contains(&class) {
            classes.push(class);
        }
    }
    classes
}

/// Reads the one statement of a request. `Err` says why it cannot be bound:
/// several statements, a kind no token covers, several targets, or an
/// object that does not exist.
pub fn requested(sql: &str) -> Result<Requested, String> {
    let raw = one_statement(sql)?;
    // SAFETY: raw is a valid RawStmt.
    let node = unsafe { (*raw).stmt };
    // SAFETY: the tree is read by node tag, each cast matching its tag, and
    // lookups raise a PostgreSQL error for missing objects.
    unsafe {
        let relation = |rv: *mut pg_sys::RangeVar| {
            (
                pg_sys::RelationRelationId,
                pg_sys::RangeVarGetRelidExtended(
                    rv,
                    pg_sys::NoLock as i32,
                    0,
                    None,
                    std::ptr::null_mut(),
                ),
            )
        };
        let (class, target) = match (*node).type_ {
            pg_sys::NodeTag::T_DeleteStmt => ("DELETE", relation((*(node as *mut pg_sys::DeleteStmt)).relation)),
            pg_sys::NodeTag::T_UpdateStmt => ("UPDATE", relation((*(node as *mut pg_sys::UpdateStmt)).relation)),
            pg_sys::NodeTag::T_MergeStmt => {
                let m = node as *mut pg_sys::MergeStmt;
                let classes = merge_classes(m);
                if classes.is_empty() {
                    return Err("a MERGE that only inserts needs no token".into());
                }
                return Ok(Requested { classes, target: relation((*m).relation) });
            }
            pg_sys::NodeTag::T_InsertStmt => {
                let i = node as *mut pg_sys::InsertStmt;
                let c = (*i).onConflictClause;
                if c.is_null() || (*c).action != pg_sys::OnConflictAction::ONCONFLICT_UPDATE {
                    return Err("an INSERT needs no token unless it is INSERT ... ON CONFLICT DO UPDATE".into());
                }
                ("UPDATE", relation((*i).relation))
            }
            pg_sys::NodeTag::T_AlterTableStmt => ("ALTER", relation((*(node as *mut pg_sys::AlterTableStmt)).relation)),
            pg_sys::NodeTag::T_TruncateStmt => {
                let rels = (*(node as *mut pg_sys::TruncateStmt)).relations;
                if rels.is_null() || (*rels).length != 1 {
                    return Err("a bound TRUNCATE names exactly one table".into());
                }
                ("TRUNCATE", relation(pg_sys::list_nth(rels, 0) as *mut pg_sys::RangeVar))
            }
            pg_sys::NodeTag::T_DropdbStmt => {
                let name = (*(node as *mut pg_sys::DropdbStmt)).dbname;
                ("DROP", (pg_sys::DatabaseRelationId, pg_sys::get_database_oid(name, false)))
            }
            pg_sys::NodeTag::T_DropStmt => {
                let d = node as *mut pg_sys::DropStmt;
                let objects = (*d).objects;
                if objects.is_null() || (*objects).length != 1 {
                    return Err("a bound DROP names exactly one object".into());
                }
                let mut rel: pg_sys::Relation = std::ptr::null_mut();
                let addr = pg_sys::get_object_address(
                    (*d).removeType,
                    pg_sys::list_nth(objects, 0) as *mut pg_sys::Node,
                    &mut rel,
                    pg_sys::AccessShareLock as i32,
                    false,
                );
                if !rel.is_null() {
                    pg_sys::relation_close(rel, pg_sys::NoLock as i32);
                }
                ("DROP", (addr.classId, addr.objectId))
            }
            _ => {
                return Err(
                    "a token can be bound only to a DELETE, UPDATE, MERGE, INSERT ... ON CONFLICT DO UPDATE, TRUNCATE, DROP or ALTER TABLE statement (request this one without the statement, naming its form with verb => ...)".into(),
                )
            }
        };
        Ok(Requested {
            classes: vec![class],
            target,
        })
    }
}

/// How a TRUNCATE or DROP given with a request reaches further than its
/// object, read from its raw parse tree (no name is resolved): with
/// CASCADE, and (for TRUNCATE) without ONLY, so that its partitions and
/// inheritance children go too.
pub fn reach(sql: &str) -> Result<(bool, bool), String> {
    let raw = one_statement(sql)?;
    // SAFETY: the tree is read by node tag, each cast matching its tag.
    unsafe {
        let node = (*raw).stmt;
        Ok(match (*node).type_ {
            pg_sys::NodeTag::T_TruncateStmt => {
                let t = node as *mut pg_sys::TruncateStmt;
                let rels = crate::pg::list_ptrs((*t).relations);
                let children = rels.iter().all(|rv| (*(*rv as *mut pg_sys::RangeVar)).inh);
                (
                    (*t).behavior == pg_sys::DropBehavior::DROP_CASCADE,
                    children,
                )
            }
            pg_sys::NodeTag::T_DropStmt => (
                (*(node as *mut pg_sys::DropStmt)).behavior == pg_sys::DropBehavior::DROP_CASCADE,
                true,
            ),
            _ => (false, false),
        })
    }
}
