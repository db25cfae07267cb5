//! The trial: PostgreSQL's own DROP, run in a subtransaction that is
//! always rolled back, and what it would remove, read from the catalogs.

use crate::privileged;
use aas_policy::recycle::objects::{Class, Dropped};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::{json, Value};

// SAFETY: a backend is single-threaded; Some only while a DROP is tried.
static mut COLLECTED: Option<Vec<(u32, u32, i32)>> = None;

// SAFETY: see COLLECTED; the one place it is borrowed from.
fn collected() -> &'static mut Option<Vec<(u32, u32, i32)>> {
    // SAFETY: see COLLECTED.
    unsafe { &mut *std::ptr::addr_of_mut!(COLLECTED) }
}

/// Is a DROP being tried (its objects collected)?
pub fn collecting() -> bool {
    collected().is_some()
}

/// Called by the object access hook at OAT_DROP: one branch unless a DROP
/// is being tried.
#[inline]
pub fn on_drop(class: pg_sys::Oid, oid: pg_sys::Oid, sub: i32) {
    if let Some(v) = collected() {
        v.push((class.to_u32(), oid.to_u32(), sub));
    }
}

/// A DROP to try: PostgreSQL's own code for it.
#[derive(Clone, Copy)]
pub(super) enum Trial {
    Drop(*mut pg_sys::DropStmt),
    DropOwned(*mut pg_sys::DropOwnedStmt),
    /// The extension's own DROP of what an entry kept (purge, expiry).
    Sql(*const std::ffi::c_char),
}

impl Trial {
    /// # Safety
    /// The statement is valid, inside a transaction; may raise.
    unsafe fn run(self) {
        // SAFETY: per this function's contract.
        unsafe {
            match self {
                Trial::DropOwned(s) => pg_sys::DropOwnedObjects(s),
                Trial::Sql(sql) => {
                    pg_sys::SPI_connect();
                    let rc = pg_sys::SPI_execute(sql, false, 0);
                    pg_sys::SPI_finish();
                    if rc < 0 {
                        pgrx::error!("SPI reported error code {rc}");
                    }
                }
                Trial::Drop(s) => match (*s).removeType {
                    pg_sys::ObjectType::OBJECT_TABLE
                    | pg_sys::ObjectType::OBJECT_VIEW
                    | pg_sys::ObjectType::OBJECT_MATVIEW
                    | pg_sys::ObjectType::OBJECT_SEQUENCE
                    | pg_sys::ObjectType::OBJECT_FOREIGN_TABLE
                    | pg_sys::ObjectType::OBJECT_INDEX => pg_sys::RemoveRelations(s),
                    _ => pg_sys::RemoveObjects(s),
                },
            }
        }
    }
}

/// Runs PostgreSQL's own DROP in a subtransaction, always rolled back, and
/// returns every object it removed. Its error (RESTRICT, ownership, a
/// missing object) is raised as PostgreSQL raised it.
///
/// # Safety
/// The trial's statement is valid, inside a transaction.
unsafe fn try_once(trial: Trial, quiet: bool) -> Vec<(u32, u32, i32)> {
    // SAFETY: PL/pgSQL's exception-block pattern: context and owner saved
    // and restored, the subtransaction rolled back on every path.
    unsafe {
        let old_context = pg_sys::CurrentMemoryContext;
        let old_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        *collected() = Some(Vec::new());
        if quiet {
            // PostgreSQL's NOTICEs (skipping, cascades) are said once, by
            // the first try or by the DROP itself; the rollback undoes this.
            crate::pg::set_setting(
                c"client_min_messages",
                c"error",
                pg_sys::GucAction::GUC_ACTION_LOCAL,
            );
        }
        let outcome = PgTryBuilder::new(|| {
            trial.run();
            None
        })
        .catch_others(|e| Some(Box::new(e)))
        .execute();
        let found = collected().take().unwrap_or_default();
        pg_sys::RollbackAndReleaseCurrentSubTransaction();
        pg_sys::MemoryContextSwitchTo(old_context);
        pg_sys::CurrentResourceOwner = old_owner;
        if let Some(e) = outcome {
            e.rethrow();
        }
        found
    }
}

/// The trial's locks go with its subtransaction: what it found is locked
/// again in the statement's transaction (as the DROP would hold it), and
/// tried again until nothing new appears, so no dependent made meanwhile
/// escapes what is kept.
///
/// # Safety
/// As `try_once`.
pub(super) unsafe fn try_drop(trial: Trial, quiet: bool) -> Vec<(u32, u32, i32)> {
    let lock = pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE;
    // SAFETY: per this function's contract.
    let mut found = unsafe { try_once(trial, quiet) };
    for _ in 0..5 {
        for (class, oid, sub) in &found {
            if *sub != 0 {
                continue;
            }
            let (class, oid) = (pg_sys::Oid::from(*class), pg_sys::Oid::from(*oid));
            // SAFETY: lock manager calls inside a transaction, as
            // dependency.c's AcquireDeletionLock takes them.
            unsafe {
                if class == pg_sys::RelationRelationId {
                    pg_sys::LockRelationOid(oid, lock);
                } else {
                    pg_sys::LockDatabaseObject(class, oid, 0, lock);
                }
            }
        }
        // SAFETY: per this function's contract.
        let again = unsafe { try_once(trial, true) };
        let mut a = again.clone();
        let mut b = found.clone();
        a.sort_unstable();
        b.sort_unstable();
        if a == b {
            return again;
        }
        found = again;
    }
    pgrx::error!("ai_agent_safety: what the DROP removes kept changing while it was looked at; nothing was dropped; run it again")
}

/// The facts of each object the DROP would remove, for the policy.
const FACTS: &str = "
SELECT o.classid, o.objid,
       pg_catalog.pg_describe_object(o.classid, o.objid, o.objsubid),
       CASE WHEN o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND o.objsubid <> 0 THEN 'column'
            WHEN o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass THEN 'relation'
            WHEN o.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass THEN 'constraint'
            WHEN o.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
              THEN CASE WHEN tg.tgconstraint <> 0 THEN 'constraint trigger' ELSE 'trigger' END
            WHEN o.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN 'default'
            WHEN o.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass THEN 'policy'
            WHEN o.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN 'rule'
            WHEN o.classid = 'pg_catalog.pg_type'::pg_catalog.regclass THEN 'type'
            WHEN o.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass THEN 'function'
            WHEN o.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass THEN 'schema'
            WHEN o.classid = 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass THEN 'statistics'
            ELSE 'other' END,
       c.relkind::text,
       COALESCE(c.relpersistence = 't', false),
       COALESCE(c.relnamespace, k.connamespace, ty.typnamespace, pr.pronamespace, st.stxnamespace,
                (SELECT r.relnamespace FROM pg_catalog.pg_class r
                  WHERE r.oid = COALESCE(tg.tgrelid, ad.adrelid, po.polrelid, ru.ev_class)),
                (SELECT n.oid FROM pg_catalog.pg_namespace n
                  WHERE n.nspname = (pg_catalog.pg_identify_object(o.classid, o.objid, o.objsubid)).schema)),
       CASE WHEN o.objsubid <> 0 AND c.oid IS NOT NULL THEN c.oid
            ELSE COALESCE(i.indrelid, tt.oid, NULLIF(k.conrelid, 0), tg.tgrelid, ad.adrelid, po.polrelid,
                          ru.ev_class, NULLIF(ty.typrelid, 0), NULLIF(el.typrelid, 0), st.stxrelid) END,
       NULLIF(k.confrelid, 0)
  FROM pg_catalog.jsonb_to_recordset($1) AS o(classid oid, objid oid, objsubid int4)
  LEFT JOIN pg_catalog.pg_class c ON o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = o.objid
  LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
  LEFT JOIN pg_catalog.pg_class tt ON c.relkind = 't' AND tt.reltoastrelid = c.oid
  LEFT JOIN pg_catalog.pg_constraint k ON o.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND k.oid = o.objid
  LEFT JOIN pg_catalog.pg_trigger tg ON o.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND tg.oid = o.objid
  LEFT JOIN pg_catalog.pg_attrdef ad ON o.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND ad.oid = o.objid
  LEFT JOIN pg_catalog.pg_policy po ON o.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND po.oid = o.objid
  LEFT JOIN pg_catalog.pg_rewrite ru ON o.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND ru.oid = o.objid
  LEFT JOIN pg_catalog.pg_type ty ON o.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND ty.oid = o.objid
  LEFT JOIN pg_catalog.pg_type el ON el.oid = ty.typelem
  LEFT JOIN pg_catalog.pg_proc pr ON o.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND pr.oid = o.objid
  LEFT JOIN pg_catalog.pg_statistic_ext st ON o.classid = 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass AND st.oid = o.objid";

/// What the trial found, as the policy reads it.
pub(super) fn facts(found: &[(u32, u32, i32)]) -> Vec<Dropped> {
    let list: Vec<Value> = found
        .iter()
        .map(|(c, o, s)| json!({"classid": c, "objid": o, "objsubid": s}))
        .collect();
    privileged::run(|| {
        Spi::connect(|c| {
            let mut out = Vec::new();
            for r in c.select(FACTS, None, &[pgrx::JsonB(Value::Array(list)).into()])? {
                let class = r.get::<String>(4)?.unwrap_or_default();
                let relkind = r.get::<String>(5)?.unwrap_or_default();
                out.push(Dropped {
                    oid: r.get::<pg_sys::Oid>(2)?.map(|o| o.to_u32()).unwrap_or(0),
                    class: match class.as_str() {
                        "relation" => Class::Relation(relkind.chars().next().unwrap_or('?')),
                        "column" => Class::Column,
                        "constraint" => Class::Constraint {
                            references: r.get::<pg_sys::Oid>(9)?.map(|o| o.to_u32()),
                        },
                        "constraint trigger" => Class::ConstraintTrigger,
                        "default" => Class::Default,
                        "trigger" => Class::Trigger,
                        "policy" => Class::Policy,
                        "rule" => Class::Rule,
                        "type" => Class::Type,
                        "function" => Class::Function,
                        "schema" => Class::Schema,
                        "statistics" => Class::Statistics,
                        _ => Class::Other,
                    },
                    what: r.get::<String>(3)?.unwrap_or_default(),
                    temporary: r.get::<bool>(6)?.unwrap_or(false),
                    schema: r.get::<pg_sys::Oid>(7)?.map(|o| o.to_u32()),
                    relation: r.get::<pg_sys::Oid>(8)?.map(|o| o.to_u32()),
                });
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
        .unwrap_or_else(|e| {
            pgrx::error!("ai_agent_safety: reading what the DROP removes failed: {e}")
        })
    })
}

/// Drops what an entry kept, for good, with `sql` (its DROP ... CASCADE):
/// tried first, and run only when everything it would remove is in the
/// bin (the recycle schema or a kept schema, or belongs to a relation
/// there). Something outside that depends on a kept object (an agent can
/// make one depend on an oid) keeps the entry: its DROP would destroy it.
///
/// A relation, or anything of one, that the DROP would remove must be the
/// entry's own: one it kept (`own`, by oid) or one in its kept schema
/// (`own_places`). Another entry's kept table that was made to depend on
/// one of this entry's (a partition key or a default naming its oid) is
/// in the bin too, but is not this entry's to remove.
pub(crate) fn drop_checked(
    sql: &str,
    places: &[u32],
    own: &[u32],
    own_places: &[u32],
) -> Result<(), String> {
    let c = std::ffi::CString::new(sql).map_err(|e| e.to_string())?;
    // SAFETY: a valid C string; inside a transaction; with the
    // extension's own rights (the bin is no one else's).
    let found = crate::privileged::run(|| unsafe { try_drop(Trial::Sql(c.as_ptr()), true) });
    let outside: Vec<String> = facts(&found)
        .into_iter()
        .filter(|d| {
            // (A toast table or its index goes only with its table, which
            // is judged itself.)
            if d.schema == Some(pg_sys::PG_TOAST_NAMESPACE) {
                return false;
            }
            let relation = d
                .relation
                .or(matches!(d.class, Class::Relation(_)).then_some(d.oid));
            if let Some(r) = relation {
                // SAFETY: a catalog lookup.
                let nsp = unsafe { pg_sys::get_rel_namespace(pg_sys::Oid::from(r)) };
                return !(own.contains(&r) || own_places.contains(&nsp.to_u32()));
            }
            !(d.schema.is_some_and(|s| places.contains(&s))
                || (d.class == Class::Schema && places.contains(&d.oid)))
        })
        .map(|d| d.what)
        .collect();
    if !outside.is_empty() {
        return Err(format!(
            "it would also remove {}, which the recycle bin does not hold for this entry (outside the bin, or kept by another entry); the entry is kept (a DBA removes those first)",
            outside.join(", ")
        ));
    }
    crate::privileged::run(|| Spi::run(sql)).map_err(|e| e.to_string())
}
