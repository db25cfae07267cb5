//! Small readers of PostgreSQL values that every layer uses: C strings,
//! lists, node tags, identifiers, names of roles and relations, and where
//! the extension lives in this database. They read; they never decide.

use pgrx::pg_sys;
use std::ffi::{c_char, c_void, CStr, CString};

/// A C string as Rust text (lossy); empty for NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
pub unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: not NULL, and NUL-terminated per this function's contract.
        unsafe { server_text(CStr::from_ptr(p).to_bytes()) }
    }
}

/// Text in the database's encoding as Rust text: converted to UTF-8 when
/// the database is not UTF-8 (a LATIN1 database's "é" is one byte that is
/// not UTF-8; read lossily it would become U+FFFD, which the audit log of a
/// LATIN1 database cannot store).
///
/// # Safety
/// Inside a backend (reads the database encoding).
pub unsafe fn server_text(bytes: &[u8]) -> String {
    // SAFETY: reads a backend variable.
    let utf8 = unsafe { pg_sys::GetDatabaseEncoding() } == pg_sys::pg_enc::PG_UTF8 as i32;
    if utf8 || bytes.is_ascii() {
        return aas_policy::audit::spool_text::lossy_utf8(bytes).into_owned();
    }
    let Ok(c) = CString::new(bytes) else {
        return String::from_utf8_lossy(bytes).into_owned();
    };
    // SAFETY: c is NUL-terminated; the result is c itself (no conversion
    // known, SQL_ASCII) or a palloc'd NUL-terminated UTF-8 string.
    unsafe {
        let out = pg_sys::pg_server_to_any(
            c.as_ptr(),
            bytes.len() as i32,
            pg_sys::pg_enc::PG_UTF8 as i32,
        );
        if out.is_null() || std::ptr::eq(out, c.as_ptr()) {
            String::from_utf8_lossy(bytes).into_owned()
        } else {
            CStr::from_ptr(out).to_string_lossy().into_owned()
        }
    }
}

/// The pointers in a PostgreSQL `List`.
///
/// # Safety
/// `list` is NULL or a valid pointer `List`.
pub unsafe fn list_ptrs(list: *mut pg_sys::List) -> Vec<*mut c_void> {
    // SAFETY: per this function's contract.
    unsafe { list_iter(list) }.collect()
}

/// The pointers in a PostgreSQL `List`, without allocating (for hot paths).
///
/// # Safety
/// `list` is NULL or a valid pointer `List` that outlives the iterator.
pub unsafe fn list_iter(list: *mut pg_sys::List) -> impl Iterator<Item = *mut c_void> {
    let (n, cells) = if list.is_null() {
        (0, std::ptr::null_mut())
    } else {
        // SAFETY: a valid List has `length` initialised cells.
        unsafe { ((*list).length as usize, (*list).elements) }
    };
    // SAFETY: i < n, the List's length.
    (0..n).map(move |i| unsafe { (*cells.add(i)).ptr_value })
}

/// The n-th pointer (0-based) of a PostgreSQL `List`, or NULL past its end.
///
/// # Safety
/// `list` is NULL or a valid pointer `List`.
pub unsafe fn list_nth(list: *mut pg_sys::List, n: usize) -> *mut c_void {
    // SAFETY: per this function's contract.
    unsafe { list_iter(list) }
        .nth(n)
        .unwrap_or(std::ptr::null_mut())
}

/// The integers in a PostgreSQL integer `List`.
///
/// # Safety
/// `list` is NULL or a valid integer `List`.
pub unsafe fn list_ints(list: *mut pg_sys::List) -> Vec<i32> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: a valid List has `length` initialised cells.
    unsafe {
        let l = &*list;
        (0..l.length as usize)
            .map(|i| (*l.elements.add(i)).int_value)
            .collect()
    }
}

/// The oids in a PostgreSQL oid `List`.
///
/// # Safety
/// `list` is NULL or a valid oid `List`.
pub unsafe fn oid_list(list: *mut pg_sys::List) -> Vec<pg_sys::Oid> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: a valid List has `length` initialised cells.
    unsafe {
        let l = &*list;
        (0..l.length as usize)
            .map(|i| (*l.elements.add(i)).oid_value)
            .collect()
    }
}

/// The tag of a node.
///
/// # Safety
/// `p` points to a PostgreSQL `Node`.
pub unsafe fn node_tag(p: *const c_void) -> pg_sys::NodeTag {
    // SAFETY: every Node starts with its tag.
    unsafe { (*(p as *const pg_sys::Node)).type_ }
}

/// An identifier quoted as PostgreSQL would (only when it must be).
pub fn quote_ident(s: &str) -> String {
    let c = CString::new(s).unwrap_or_default();
    // SAFETY: quote_identifier reads a NUL-terminated string and returns one.
    unsafe { cstr(pg_sys::quote_identifier(c.as_ptr())) }
}

/// `schema.relation` for a relation oid, quoted as PostgreSQL would.
pub fn relation_display(relid: pg_sys::Oid) -> String {
    relation_names::looked_up(relid).unwrap_or_else(|| format!("relation {}", relid.to_u32()))
}

/// A role's name, or `oid N` when it does not exist.
pub fn role_name(oid: pg_sys::Oid) -> String {
    // SAFETY: GetUserNameFromId with noerr = true returns NULL for a missing role.
    unsafe {
        let p = pg_sys::GetUserNameFromId(oid, true);
        if p.is_null() {
            format!("oid {}", oid.to_u32())
        } else {
            cstr(p)
        }
    }
}

pub fn session_user_name() -> String {
    // SAFETY: reads a backend variable.
    role_name(unsafe { pg_sys::GetSessionUserId() })
}

pub fn current_user_name() -> String {
    // SAFETY: reads a backend variable.
    role_name(unsafe { pg_sys::GetUserId() })
}

/// A timestamptz as PostgreSQL prints it in this session.
pub fn timestamp_text(t: i64) -> String {
    // SAFETY: timestamptz_to_str returns a static buffer, copied at once.
    unsafe { cstr(pg_sys::timestamptz_to_str(t)) }
}

/// The oid of the ai_agent_safety extension in this database, or InvalidOid.
pub fn extension_oid() -> pg_sys::Oid {
    // SAFETY: catalog lookup with missing_ok = true.
    unsafe { pg_sys::get_extension_oid(c"ai_agent_safety".as_ptr(), true) }
}

/// Is this catalog object a member of the ai_agent_safety extension? An
/// object only named like the extension's (a schema or table an agent made
/// where the extension is not created) is not: the extension never reads,
/// writes or trusts such an object.
pub fn belongs_to_extension(classid: pg_sys::Oid, objid: pg_sys::Oid) -> bool {
    let ext = extension_oid();
    // SAFETY: a pg_depend lookup; InvalidOid when the object is no member.
    ext != pg_sys::InvalidOid
        && objid != pg_sys::InvalidOid
        && unsafe { pg_sys::getExtensionOfObject(classid, objid) } == ext
}

// SAFETY: a backend is single-threaded: the answer of `own_namespace`,
// and the epoch the pg_namespace syscache callback bumps.
static mut OWN_NAMESPACE: (u64, u64, pg_sys::Oid) = (1, 0, pg_sys::InvalidOid);

#[pgrx::pg_guard]
// SAFETY: a syscache callback registered in register_invalidation.
unsafe extern "C-unwind" fn namespace_changed(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    // SAFETY: see OWN_NAMESPACE.
    unsafe { OWN_NAMESPACE.0 = OWN_NAMESPACE.0.wrapping_add(1) };
}

/// Registers the pg_namespace syscache callback (the extension's schema
/// comes and goes with the extension). Called from `_PG_init`.
pub fn register_invalidation() {
    // SAFETY: called once from _PG_init; the callback matches the type.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(namespace_changed),
            pg_sys::Datum::from(0),
        )
    };
}

/// The oid of the extension's schema in this database, or InvalidOid when
/// there is no such schema or it is not the extension's own. Cached until
/// a schema changes (a pg_depend lookup otherwise, per call).
pub fn own_namespace() -> pg_sys::Oid {
    // SAFETY: see OWN_NAMESPACE.
    let c = unsafe { &mut *std::ptr::addr_of_mut!(OWN_NAMESPACE) };
    if c.1 == c.0 {
        return c.2;
    }
    // SAFETY: catalog lookup with missing_ok = true.
    let nsp = unsafe { pg_sys::get_namespace_oid(c"ai_agent_safety".as_ptr(), true) };
    let own = if belongs_to_extension(pg_sys::NamespaceRelationId, nsp) {
        nsp
    } else {
        pg_sys::InvalidOid
    };
    *c = (c.0, c.0, own);
    own
}

/// The oid of one of the extension's own tables by name, or InvalidOid when
/// it does not exist as a member of the extension.
pub fn own_relation(name: &CStr) -> pg_sys::Oid {
    let nsp = own_namespace();
    if nsp == pg_sys::InvalidOid {
        return pg_sys::InvalidOid;
    }
    // SAFETY: catalog lookup; InvalidOid when missing.
    let rel = unsafe { pg_sys::get_relname_relid(name.as_ptr(), nsp) };
    if belongs_to_extension(pg_sys::RelationRelationId, rel) {
        rel
    } else {
        pg_sys::InvalidOid
    }
}

/// Is the extension created in this database (its own tokens table present)?
pub fn extension_created() -> bool {
    own_relation(c"tokens") != pg_sys::InvalidOid
}

/// This library's version (the crate's): `ai_agent_safety.library_version()`.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Does this library serve the extension's SQL objects in this database
/// (`pg_extension.extversion`)? Ok when the extension is not created.
/// Inside a transaction (SPI).
pub fn sql_objects_served() -> Result<(), aas_policy::versions::NotServed> {
    // A read-only SPI select: Spi::get_one marks the transaction as
    // writing, which takes a transaction id (and fails on a standby).
    let v = pgrx::Spi::connect(|c| {
        let t = c.select(
            "SELECT extversion::text FROM pg_catalog.pg_extension WHERE extname = 'ai_agent_safety'",
            Some(1),
            &[],
        )?;
        if t.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        t.first().get::<String>(1)
    })
    .ok()
    .flatten();
    match v {
        None => Ok(()),
        Some(v) => aas_policy::versions::served(LIBRARY_VERSION, &v),
    }
}

/// The text of this statement within a possibly multi-statement query string.
///
/// # Safety
/// `query` is NULL or a NUL-terminated string; `pstmt` is NULL or a valid
/// `PlannedStmt` of that query.
pub unsafe fn statement_text(query: *const c_char, pstmt: *const pg_sys::PlannedStmt) -> String {
    if query.is_null() {
        return String::new();
    }
    // SAFETY: per this function's contract.
    let (all, loc, len) = unsafe {
        let all = CStr::from_ptr(query).to_bytes();
        if pstmt.is_null() {
            (all, 0, 0)
        } else {
            (
                all,
                (*pstmt).stmt_location.max(0) as usize,
                (*pstmt).stmt_len.max(0) as usize,
            )
        }
    };
    let first = loc.min(all.len());
    let end = if len == 0 {
        all.len()
    } else {
        (first + len).min(all.len())
    };
    // With the comments ahead of it (PostgreSQL 18 places a statement at its
    // first token): a leading comment tag belongs to its statement.
    // (Text before it that is not UTF-8 is left out, as the statement's own.)
    let start = match std::str::from_utf8(&all[..first]) {
        Ok(before) if first > 0 => {
            aas_policy::sql_lexer::start_with_leading_comments(before, first).min(first)
        }
        _ => first,
    };
    // SAFETY: inside a backend.
    unsafe { server_text(&all[start..end]) }.trim().to_string()
}

/// Does the relation have rules (`pg_class.relhasrules`)? False for one
/// that is gone.
///
/// # Safety
/// Inside a transaction.
pub unsafe fn has_rules(relid: pg_sys::Oid) -> bool {
    // SAFETY: the relation is opened and closed here; its pg_class row
    // belongs to the relcache and is only read.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return false;
        }
        let rules = (*(*rel).rd_rel).relhasrules;
        pg_sys::RelationClose(rel);
        rules
    }
}

/// Calls `each` with every tuple of a catalog and the catalog's tuple
/// descriptor, in a heap scan under AccessShareLock (usable during
/// authentication for the shared catalogs). The tuple is valid only during
/// the call.
///
/// # Safety
/// Inside a transaction, or during authentication for a shared catalog.
pub unsafe fn scan_catalog(
    relid: pg_sys::Oid,
    mut each: impl FnMut(pg_sys::HeapTuple, pg_sys::TupleDesc),
) {
    // SAFETY: the relation and scan are opened and closed here; each tuple
    // is handed out while the scan holds it.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as i32);
        let desc = (*rel).rd_att;
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::InvalidOid,
            false,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        loop {
            let tup = pg_sys::systable_getnext(scan);
            if tup.is_null() {
                break;
            }
            each(tup, desc);
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
    }
}

/// Reports a GUC check hook's refusal the way PostgreSQL's GUC_check_err*
/// macros do: the SQLSTATE, an optional primary message (PostgreSQL's
/// "invalid value for parameter" otherwise), the detail and an optional
/// hint. Returns false, the check hook's "refused".
///
/// # Safety
/// Called from a check hook, whose error strings PostgreSQL reads and frees.
pub unsafe fn guc_check_error(
    code: pgrx::PgSqlErrorCode,
    message: Option<&str>,
    detail: &str,
    hint: Option<&str>,
) -> bool {
    fn palloc_str(s: &str) -> *mut c_char {
        let c = CString::new(s.replace('\0', "")).unwrap_or_default();
        // SAFETY: c is NUL-terminated; pstrdup copies it into the current
        // memory context.
        unsafe { pg_sys::pstrdup(c.as_ptr()) }
    }
    // SAFETY: per this function's contract.
    unsafe {
        pg_sys::GUC_check_errcode(code as i32);
        if let Some(m) = message {
            pg_sys::GUC_check_errmsg_string = palloc_str(m);
        }
        pg_sys::GUC_check_errdetail_string = palloc_str(detail);
        if let Some(h) = hint {
            pg_sys::GUC_check_errhint_string = palloc_str(h);
        }
    }
    false
}

/// The owner of a relation, from the syscache.
///
/// # Safety
/// Inside a transaction.
pub unsafe fn relation_owner(relid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    let tup = pg_sys::SearchSysCache1(
        pg_sys::SysCacheIdentifier::RELOID as i32,
        pg_sys::Datum::from(relid),
    );
    if tup.is_null() {
        return None;
    }
    let owner = (*(pg_sys::GETSTRUCT(tup) as *const pg_sys::FormData_pg_class)).relowner;
    pg_sys::ReleaseSysCache(tup);
    Some(owner)
}

/// The relation a RangeVar names, if it exists (no lock taken).
///
/// # Safety
/// `rv` is NULL or a valid RangeVar, inside a transaction.
pub unsafe fn existing_relation(rv: *const pg_sys::RangeVar) -> Option<pg_sys::Oid> {
    if rv.is_null() {
        return None;
    }
    // SAFETY: per this function's contract; missing_ok.
    let oid = unsafe {
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as i32,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// utils/timeout.h, which pgrx does not bind.
pub mod citus;
mod foreign_keys;
mod inheritance;
pub mod relation_names;
pub mod timeout;
mod tuples;
pub mod worker;

pub use foreign_keys::{action_writes, cascading_referencers, foreign_key_targets};
pub use inheritance::{family, family_locked};
pub use tuples::{attr, column_number, column_value};

/// Sets a setting as the session would (`SET`, or `SET LOCAL` with
/// `GUC_ACTION_LOCAL`), at the current GUC nest level: with
/// `GUC_ACTION_SAVE` it goes when that level ends.
///
/// # Safety
/// Inside a transaction; PostgreSQL raises for a bad name or value.
pub unsafe fn set_setting(name: &CStr, value: &CStr, action: pg_sys::GucAction::Type) {
    // SAFETY: per this function's contract.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            0,
            false,
        );
    }
}

/// Does this database keep text as UTF-8 (or unchecked: SQL_ASCII), the
/// spool's and an audit batch's encoding?
pub fn database_stores_utf8() -> bool {
    // SAFETY: reads the database's encoding, set once connected.
    let enc = unsafe { pg_sys::GetDatabaseEncoding() } as u32;
    enc == pg_sys::pg_enc::PG_UTF8 || enc == pg_sys::pg_enc::PG_SQL_ASCII
}

/// Runs `f` with search_path set to `path`, at a GUC nest level of its own
/// (as a function's SET clause makes it): restored after `f`, and by the
/// transaction if `f` raises.
pub fn with_search_path<R>(path: &str, f: impl FnOnce() -> R) -> Result<R, String> {
    let path = CString::new(path).map_err(|_| "the search_path contains a NUL byte")?;
    // SAFETY: a nest level opened and closed around one setting, inside a
    // transaction; an error rolls it back with the transaction.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        set_setting(c"search_path", &path, pg_sys::GucAction::GUC_ACTION_SAVE);
        let r = f();
        pg_sys::AtEOXact_GUC(true, level);
        Ok(r)
    }
}

/// Raises a refusal: SQLSTATE 42501 with message, detail and hint.
pub fn refuse(d: aas_policy::Denial) -> ! {
    use pgrx::pg_sys::panic::ErrorReport;
    use pgrx::{PgLogLevel, PgSqlErrorCode};
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        d.message,
        "ai_agent_safety",
    )
    .set_detail(d.detail)
    .set_hint(d.hint)
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Is this query one of the foreign-key actions PostgreSQL runs for a
/// statement (ri_triggers.c runs them, and only them, with
/// SECURITY_NOFORCE_RLS in the security context)?
pub fn in_foreign_key_action() -> bool {
    let mut user = pg_sys::InvalidOid;
    let mut context = 0;
    // SAFETY: reads two backend variables into valid out-pointers.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    context & pg_sys::SECURITY_NOFORCE_RLS as i32 != 0
}

/// Runs `f` in a subtransaction of the current transaction. An error in it
/// is rolled back with the subtransaction and logged as `what`, and the
/// transaction goes on (`None`): for a background worker's periodic step,
/// whose loop must outlive a failure of one step.
pub fn in_subtransaction<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    use pgrx::PgTryBuilder;
    // SAFETY: PL/pgSQL's exception-block pattern: memory context and
    // resource owner saved and restored, the subtransaction released on
    // success and rolled back on error; inside a transaction.
    unsafe {
        let old_context = pg_sys::CurrentMemoryContext;
        let old_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        let f = std::panic::AssertUnwindSafe(f);
        let r = PgTryBuilder::new(move || {
            // (The wrapper whole, not its field: it is what is unwind safe.)
            let f = f;
            Some((f.0)())
        })
        .catch_others(|e| {
            let message = match &e {
                pgrx::pg_sys::panic::CaughtError::PostgresError(r)
                | pgrx::pg_sys::panic::CaughtError::ErrorReport(r)
                | pgrx::pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => {
                    r.message().to_string()
                }
            };
            pgrx::log!("ai_agent_safety: {what} failed: {message}");
            None
        })
        .execute();
        if r.is_some() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(old_context);
        pg_sys::CurrentResourceOwner = old_owner;
        r
    }
}
