//! The relation entries of a planned query, the same on every major:
//! which relation, what the query asks permission for on it, and as whom.
//!
//! PostgreSQL 15 keeps the permissions on the range-table entry itself
//! (`requiredPerms`, `checkAsUser`). PostgreSQL 16 moved them into an
//! `RTEPermissionInfo` that the entry indexes (`perminfoindex`, 1-based, 0
//! for none) in the statement's `permInfos`: the one place per major below.

use pgrx::pg_sys;

/// One relation entry of a planned query.
#[derive(Clone, Copy)]
pub struct Relation<'a> {
    /// Its index in the range table (1-based, as plan nodes refer to it).
    pub rti: u32,
    pub rte: &'a pg_sys::RangeTblEntry,
    /// What the query asks permission for (ACL_SELECT, ACL_DELETE, ...).
    pub required: pg_sys::AclMode,
    /// The role it is checked as: a view's or rule's owner, or 0 for the
    /// current user.
    pub check_as: pg_sys::Oid,
}

impl Relation<'_> {
    pub fn relid(&self) -> pg_sys::Oid {
        self.rte.relid
    }

    pub fn is_view(&self) -> bool {
        self.rte.relkind as u8 == pg_sys::RELKIND_VIEW
    }
}

/// The permissions of one entry.
///
/// # Safety
/// `rte` is an entry of `ps`'s range table.
#[cfg(feature = "pg15")]
#[inline]
unsafe fn perms(
    _ps: &pg_sys::PlannedStmt,
    rte: &pg_sys::RangeTblEntry,
) -> (pg_sys::AclMode, pg_sys::Oid) {
    (rte.requiredPerms, rte.checkAsUser)
}

/// The permissions of one entry (PostgreSQL 16 and later: RTEPermissionInfo).
///
/// # Safety
/// `rte` is an entry of `ps`'s range table.
#[cfg(not(feature = "pg15"))]
#[inline]
unsafe fn perms(
    ps: &pg_sys::PlannedStmt,
    rte: &pg_sys::RangeTblEntry,
) -> (pg_sys::AclMode, pg_sys::Oid) {
    if rte.perminfoindex == 0 {
        return (0, pg_sys::InvalidOid);
    }
    // SAFETY: per this function's contract, perminfoindex indexes permInfos.
    let info = unsafe { crate::pg::list_nth(ps.permInfos, rte.perminfoindex as usize - 1) }
        as *const pg_sys::RTEPermissionInfo;
    if info.is_null() {
        // Cannot happen in a valid statement; ask for everything, so the
        // entry is looked at rather than skipped.
        return (
            (pg_sys::ACL_INSERT | pg_sys::ACL_UPDATE | pg_sys::ACL_DELETE) as pg_sys::AclMode,
            pg_sys::InvalidOid,
        );
    }
    // SAFETY: a valid RTEPermissionInfo of the statement.
    let info = unsafe { &*info };
    (info.requiredPerms, info.checkAsUser)
}

/// The relation entries of a planned query: tables and the like, and views.
/// A view expanded by the rewriter stays an RTE_RELATION entry in 15; from
/// 16 on it becomes an RTE_SUBQUERY entry that keeps its `relid`, `relkind`
/// and permissions, so both are taken.
///
/// # Safety
/// `ps` is a valid PlannedStmt that outlives the iterator.
pub unsafe fn relations(ps: &pg_sys::PlannedStmt) -> impl Iterator<Item = Relation<'_>> {
    // SAFETY: per this function's contract: rtable is a List of RangeTblEntry.
    unsafe { crate::pg::list_iter(ps.rtable) }
        .enumerate()
        // SAFETY: each element is a valid RangeTblEntry.
        .map(|(i, rte)| {
            (i as u32 + 1, unsafe {
                &*(rte as *const pg_sys::RangeTblEntry)
            })
        })
        .filter(|(_, rte)| {
            rte.rtekind == pg_sys::RTEKind::RTE_RELATION
                || (rte.rtekind == pg_sys::RTEKind::RTE_SUBQUERY && rte.relid != pg_sys::InvalidOid)
        })
        .map(move |(rti, rte)| {
            // SAFETY: rte is one of ps's entries.
            let (required, check_as) = unsafe { perms(ps, rte) };
            Relation {
                rti,
                rte,
                required,
                check_as,
            }
        })
}
