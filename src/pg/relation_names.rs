//! `schema.relation` names as PostgreSQL quotes them, looked up, and
//! cached per backend for the names of the objects a statement's
//! operations act on (`classify::relation_ref`).
//!
//! Every audited write names its table in its event (and the guard's
//! messages name theirs): three syscache lookups and two calls of
//! `quote_identifier`, about 4,900 instructions per name (callgrind, an
//! agent's write transaction with `audit_level = writes`). A name is kept
//! until its relation changes (the relcache callback, which a rename or a
//! `SET SCHEMA` sends), a schema changes (the pg_namespace syscache
//! callback) or `quote_all_identifiers` changes. A name looked up while
//! invalidations arrived (the lookup itself can read them) is not kept:
//! it may be the old one.
//!
//! SQL the extension builds from a name (the recycle bin's) never uses the
//! cache: `pg::relation_display` looks the name up each time.

use pgrx::pg_sys;
use rustc_hash::FxHashMap as HashMap;

/// More names than this and the cache starts again (a session touching
/// thousands of tables pays the lookups, never unbounded memory).
const MAX_NAMES: usize = 4096;

struct Names {
    map: Option<HashMap<pg_sys::Oid, String>>,
    /// `quote_all_identifiers` when the names were made.
    quote_all: bool,
    /// Bumped by every callback: a lookup during which it moved may have
    /// read a name that was changed meanwhile.
    generation: u64,
}

// SAFETY: a backend is single-threaded; read and written by its own thread
// only (the lookups below and the cache callbacks).
static mut NAMES: Names = Names {
    map: None,
    quote_all: false,
    generation: 0,
};

#[pgrx::pg_guard]
// SAFETY: a relcache callback registered in register_invalidation.
unsafe extern "C-unwind" fn relation_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    // SAFETY: see NAMES.
    let names = unsafe { &mut *std::ptr::addr_of_mut!(NAMES) };
    names.generation = names.generation.wrapping_add(1);
    if let Some(m) = names.map.as_mut() {
        if relid == pg_sys::InvalidOid {
            m.clear();
        } else {
            m.remove(&relid);
        }
    }
}

#[pgrx::pg_guard]
// SAFETY: a syscache callback registered in register_invalidation.
unsafe extern "C-unwind" fn namespace_changed(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    // SAFETY: see NAMES.
    let names = unsafe { &mut *std::ptr::addr_of_mut!(NAMES) };
    names.generation = names.generation.wrapping_add(1);
    if let Some(m) = names.map.as_mut() {
        m.clear();
    }
}

/// Registers the callbacks. Called from `_PG_init`.
pub fn register_invalidation() {
    // SAFETY: called once from _PG_init; the callbacks match the types.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relation_changed), pg_sys::Datum::from(0));
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(namespace_changed),
            pg_sys::Datum::from(0),
        );
    }
}

/// `schema.relation` for a relation oid, quoted as PostgreSQL would, from
/// the cache; `relation N` when there is no such relation (not cached).
/// For names shown (events, messages), never for SQL.
pub fn cached(relid: pg_sys::Oid) -> String {
    // SAFETY: see NAMES; reads a setting variable.
    let (names, quote_all) = unsafe {
        (
            &mut *std::ptr::addr_of_mut!(NAMES),
            pg_sys::quote_all_identifiers,
        )
    };
    let map = names.map.get_or_insert_with(HashMap::default);
    if names.quote_all != quote_all || map.len() >= MAX_NAMES {
        map.clear();
        names.quote_all = quote_all;
    }
    if let Some(n) = map.get(&relid) {
        return n.clone();
    }
    let before = names.generation;
    match looked_up(relid) {
        Some(n) => {
            // The lookups may have run invalidation callbacks: the map is
            // taken again, and a name read while one ran is not kept.
            // SAFETY: see NAMES.
            let names = unsafe { &mut *std::ptr::addr_of_mut!(NAMES) };
            if names.generation == before {
                names
                    .map
                    .get_or_insert_with(HashMap::default)
                    .insert(relid, n.clone());
            }
            n
        }
        None => format!("relation {}", relid.to_u32()),
    }
}

/// `schema.relation` for a relation oid, looked up now; None when there is
/// no such relation.
pub fn looked_up(relid: pg_sys::Oid) -> Option<String> {
    // SAFETY: syscache lookups by oid; NULL when the relation is gone.
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            return None;
        }
        let nsp = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        if nsp.is_null() {
            return None;
        }
        Some(format!(
            "{}.{}",
            super::quote_ident(&super::cstr(nsp)),
            super::quote_ident(&super::cstr(name))
        ))
    }
}
