//! The kept database itself: looked up and locked as PostgreSQL's DROP
//! DATABASE does, renamed, opened or closed, and given to an owner, as the
//! bootstrap superuser.

use crate::{pg, privileged};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CString;

/// A database's name, whether it accepts connections, and whether it is a
/// template, from the syscache.
pub(super) fn database_row(oid: pg_sys::Oid) -> Option<(String, bool, bool)> {
    // SAFETY: syscache lookup and release; the tuple is read while pinned.
    unsafe {
        let tup = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::DATABASEOID as i32,
            pg_sys::Datum::from(oid),
        );
        if tup.is_null() {
            return None;
        }
        let form = &*(pg_sys::GETSTRUCT(tup) as *const pg_sys::FormData_pg_database);
        let row = (
            pg::cstr(form.datname.data.as_ptr()),
            form.datallowconn,
            form.datistemplate,
        );
        pg_sys::ReleaseSysCache(tup);
        Some(row)
    }
}

pub(super) fn bootstrap_superuser() -> String {
    // SAFETY: a catalog lookup of a role that always exists.
    unsafe {
        pg::cstr(pg_sys::GetUserNameFromId(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            false,
        ))
    }
}

pub(super) fn role_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: catalog lookup with missing_ok = true.
    unsafe { pg_sys::get_role_oid(c.as_ptr(), true) != pg_sys::InvalidOid }
}

/// The name of a database's owner.
pub(super) fn database_owner(oid: pg_sys::Oid) -> String {
    // SAFETY: syscache lookups and release; the tuple is read while pinned.
    unsafe {
        let tup = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::DATABASEOID as i32,
            pg_sys::Datum::from(oid),
        );
        if tup.is_null() {
            return bootstrap_superuser();
        }
        let owner = (*(pg_sys::GETSTRUCT(tup) as *const pg_sys::FormData_pg_database)).datdba;
        pg_sys::ReleaseSysCache(tup);
        pg::cstr(pg_sys::GetUserNameFromId(owner, false))
    }
}

/// Database `name`, locked (AccessExclusiveLock on the database object, as
/// dropdb and RenameDatabase take it) and still of that name once locked;
/// `None` when there is none.
pub(super) fn locked(name: &str) -> Option<pg_sys::Oid> {
    loop {
        let oid = database_oid(name);
        if oid == pg_sys::InvalidOid {
            return None;
        }
        // SAFETY: a lock on a shared object, held to the end of the
        // transaction; invalidations are read after it is granted.
        unsafe {
            pg_sys::LockSharedObject(
                pg_sys::DatabaseRelationId,
                oid,
                0,
                pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
            );
            pg_sys::AcceptInvalidationMessages();
        }
        if database_row(oid).is_some_and(|(n, _, _)| n == name) {
            return Some(oid);
        }
        // Renamed or dropped meanwhile: let go and look again.
        // SAFETY: releases the lock taken above.
        unsafe {
            pg_sys::UnlockSharedObject(
                pg_sys::DatabaseRelationId,
                oid,
                0,
                pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
            )
        };
    }
}

/// The recycle_retention a session of this role would have in database
/// `oid`, in seconds: its stored settings (ALTER ROLE ALL, ALTER DATABASE,
/// ALTER ROLE, ALTER ROLE IN DATABASE), else postgresql.conf's value, else
/// the built-in default. (The session's own value may come from where the
/// DROP runs, a database where a DBA turned the bin off.)
pub(super) fn target_retention_s(oid: pg_sys::Oid) -> Option<i64> {
    // SAFETY: reads a backend variable.
    let role = unsafe { pg_sys::GetSessionUserId() };
    let v = match crate::dbfacts::stored_settings(oid, role)
        .remove(aas_policy::recycle::RETENTION_SETTING)
    {
        Some(v) => v,
        None => privileged::run(|| {
            Spi::get_one::<String>(
                "SELECT COALESCE(
                   (SELECT f.setting FROM pg_catalog.pg_file_settings f
                     WHERE f.name = 'ai_agent_safety.recycle_retention' AND f.applied
                     ORDER BY f.seqno DESC LIMIT 1),
                   (SELECT s.boot_val FROM pg_catalog.pg_settings s
                     WHERE s.name = 'ai_agent_safety.recycle_retention'))",
            )
            .ok()
            .flatten()
        })?,
    };
    let c = CString::new(v).ok()?;
    let mut n: std::ffi::c_int = 0;
    // SAFETY: parses a setting's text with its unit, as the GUC machinery
    // does; no hint is asked for.
    unsafe {
        pg_sys::parse_int(
            c.as_ptr(),
            &mut n,
            pg_sys::GUC_UNIT_S as std::ffi::c_int,
            std::ptr::null_mut(),
        )
    }
    .then_some(n as i64)
}

pub(super) fn database_oid(name: &str) -> pg_sys::Oid {
    let Ok(c) = CString::new(name) else {
        return pg_sys::InvalidOid;
    };
    // SAFETY: catalog lookup with missing_ok = true.
    unsafe { pg_sys::get_database_oid(c.as_ptr(), true) }
}

/// Renames database `from` to `to`, opens or closes it, and gives it to
/// `owner`, as the bootstrap superuser (the agent may own the database
/// without CREATEDB; the approver restoring it owns nothing). A kept
/// database belongs to the bootstrap superuser: its old owner (the agent,
/// often) can neither rename it, nor open it, nor drop it.
pub(super) fn rename_and_set_connections(from: &str, to: &str, allow: bool, owner: &str) {
    let (f, t) = (
        CString::new(from).expect("a database name has no NUL"),
        CString::new(to).expect("a database name has no NUL"),
    );
    privileged::run(|| {
        // SAFETY: inside a transaction; raises PostgreSQL's own errors (a
        // database in use, a name taken).
        unsafe {
            pg_sys::RenameDatabase(f.as_ptr(), t.as_ptr());
            pg_sys::CommandCounterIncrement();
        }
        Spi::run(&format!(
            "ALTER DATABASE {db} WITH ALLOW_CONNECTIONS {allow}; ALTER DATABASE {db} OWNER TO {}",
            pg::quote_ident(owner),
            db = pg::quote_ident(to)
        ))
        .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"));
    })
}
