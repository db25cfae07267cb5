//! Facts about databases: the one the session is in (from its settings) and any
//! other one (from that database's own entries in pg_db_role_setting).
//!
//! DROP DATABASE x is decided by x's settings, not the current database's, and a
//! login is decided before per-database settings are applied. Both read
//! pg_db_role_setting directly, emulating PostgreSQL's precedence:
//! postgresql.conf < ALTER ROLE ALL < ALTER DATABASE < ALTER ROLE < ALTER ROLE IN DATABASE.
//! The catalog is shared and scanned without SPI, so this also works during
//! authentication.

use crate::settings;
use aas_policy::{DatabaseFacts, OpSet};
use pgrx::pg_sys;
use pgrx::FromDatum;
use std::collections::HashMap;
use std::ffi::CString;

const DB_ROLE_SETTING_RELATION_ID: u32 = 2964;

/// The database the session is connected to, from its live settings.
pub fn current() -> DatabaseFacts {
    DatabaseFacts {
        name: current_database_name(),
        require_approval: settings::require_approval(),
        protected: settings::protected_operations(),
        environment: settings::environment().map(str::to_string),
    }
}

/// The name of the database this backend is connected to (read once).
pub fn current_database_name() -> String {
    // SAFETY: a backend is single-threaded and never changes database.
    static mut NAME: Option<String> = None;
    // SAFETY: as above; get_database_name is a catalog lookup by oid.
    unsafe {
        let cached = &mut *std::ptr::addr_of_mut!(NAME);
        cached
            .get_or_insert_with(|| crate::pg::cstr(pg_sys::get_database_name(pg_sys::MyDatabaseId)))
            .clone()
    }
}

/// The effective ai_agent_safety.* settings for `role` in database `db`
/// (either may be InvalidOid), from pg_db_role_setting alone.
pub fn stored_settings(db: pg_sys::Oid, role: pg_sys::Oid) -> HashMap<String, String> {
    let mut levels: Vec<(u8, Vec<String>)> = Vec::new();
    // SAFETY: a shared catalog, readable during authentication too; each
    // tuple's columns are read during the call.
    unsafe {
        crate::pg::scan_catalog(
            pg_sys::Oid::from(DB_ROLE_SETTING_RELATION_ID),
            |tup, desc| {
                let mut isnull = false;
                let d = pg_sys::heap_getattr(tup, 1, desc, &mut isnull);
                let setdb = pg_sys::Oid::from_datum(d, isnull).unwrap_or(pg_sys::InvalidOid);
                let r = pg_sys::heap_getattr(tup, 2, desc, &mut isnull);
                let setrole = pg_sys::Oid::from_datum(r, isnull).unwrap_or(pg_sys::InvalidOid);
                let level = match (setdb == pg_sys::InvalidOid, setrole == pg_sys::InvalidOid) {
                    (true, true) => 1,
                    (false, true) if setdb == db => 2,
                    (true, false) if setrole == role => 3,
                    (false, false) if setdb == db && setrole == role => 4,
                    _ => return,
                };
                let c = pg_sys::heap_getattr(tup, 3, desc, &mut isnull);
                let config: Vec<Option<String>> =
                    Vec::<Option<String>>::from_datum(c, isnull).unwrap_or_default();
                levels.push((level, config.into_iter().flatten().collect()));
            },
        );
    }
    levels.sort_by_key(|(l, _)| *l);
    let mut out = HashMap::new();
    for (_, entries) in levels {
        for e in entries {
            if let Some((k, v)) = e.split_once('=') {
                if k.starts_with("ai_agent_safety.") {
                    out.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    out
}

fn parse_bool(s: &str) -> Option<bool> {
    let c = CString::new(s).ok()?;
    let mut b = false;
    // SAFETY: c is NUL-terminated; b is a valid out-pointer.
    unsafe { pg_sys::parse_bool(c.as_ptr(), &mut b) }.then_some(b)
}

/// Facts about database `name` as the given role would see them there.
/// `None` when the database does not exist.
pub fn other(name: &str, role: pg_sys::Oid) -> Option<DatabaseFacts> {
    let c = CString::new(name).ok()?;
    // SAFETY: catalog lookup with missing_ok = true.
    let db = unsafe { pg_sys::get_database_oid(c.as_ptr(), true) };
    if db == pg_sys::InvalidOid {
        return None;
    }
    Some(facts_from(name, &stored_settings(db, role)))
}

pub fn facts_from(name: &str, s: &HashMap<String, String>) -> DatabaseFacts {
    let env = s
        .get("ai_agent_safety.environment")
        .map(|v| v.trim().to_string())
        .or_else(settings::file_environment)
        .filter(|v| !v.is_empty());
    DatabaseFacts {
        name: name.to_string(),
        require_approval: s
            .get("ai_agent_safety.require_approval")
            .and_then(|v| parse_bool(v))
            .unwrap_or_else(settings::file_require_approval),
        protected: s
            .get("ai_agent_safety.protected_operations")
            .and_then(|v| OpSet::parse(v).ok())
            .unwrap_or_else(settings::file_protected_operations),
        environment: env,
    }
}
