//! An agent's new or validated domain constraint may not read kept rows:
//! PostgreSQL checks it against every value of the domain in every table
//! (a composite, array or domain over it included), with the constraint's
//! code and without asking for any privilege on those tables.

use crate::{pg, privileged};
use aas_policy::recycle as policy;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Refuses an agent's `ALTER DOMAIN ... ADD CONSTRAINT` or `VALIDATE
/// CONSTRAINT` when a relation the recycle bin keeps (in
/// `ai_agent_safety_recycle` or a kept schema `recycled_<n>_...`) has a
/// column of that domain, directly or through types made of it.
///
/// # Safety
/// `node` is a valid AlterDomainStmt, inside a transaction.
pub unsafe fn refuse_check_of_kept(node: *mut pg_sys::Node) {
    let s = &*(node as *const pg_sys::AlterDomainStmt);
    if !matches!(s.subtype as u8, b'C' | b'V') {
        return;
    }
    let tn = pg_sys::makeTypeNameFromNameList(s.typeName);
    let domain = pg_sys::LookupTypeNameOid(std::ptr::null_mut(), tn, true);
    if domain == pg_sys::InvalidOid {
        return;
    }
    let kept = privileged::run(|| {
        Spi::get_one_with_args::<bool>(
            "WITH RECURSIVE dep(classid, objid) AS (
                 SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, $1
               UNION
                 SELECT x.classid, x.objid FROM dep, LATERAL (
                     SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
                      WHERE d.refclassid = dep.classid AND d.refobjid = dep.objid
                        AND d.classid IN ('pg_catalog.pg_type'::pg_catalog.regclass, 'pg_catalog.pg_class'::pg_catalog.regclass)
                   UNION ALL
                     SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, c.reltype FROM pg_catalog.pg_class c
                      WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = dep.objid AND c.reltype <> 0) x)
             SELECT EXISTS (SELECT FROM dep
                              JOIN pg_catalog.pg_class c ON dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = dep.objid
                              JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                             WHERE n.nspname = 'ai_agent_safety_recycle' OR n.nspname LIKE 'recycled\\_%')",
            &[domain.into()],
        )
        .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"))
        .unwrap_or(true)
    });
    if kept {
        // SAFETY: a catalog lookup of a type that exists.
        let name = unsafe { pg::cstr(pg_sys::format_type_be_qualified(domain)) };
        pg::refuse(policy::domain_check_of_kept_denial(
            &pg::session_user_name(),
            &name,
        ));
    }
}
