//! Finishing a prepared review: COMMIT PREPARED and ROLLBACK PREPARED of a
//! review are judged (an approver commits, never the requester nor an
//! agent) and recorded; the audit writer announces new reviews (NOTIFY
//! ai_agent_safety_requests) and rolls back expired ones.
//!
//! PostgreSQL lets only the role that prepared a transaction, or a
//! superuser, finish it. An approver who may finish a review but is
//! neither finishes it as its owner: the command runs with the owner as
//! current user (the transaction's abort restores the user on error).

use super::file::{self, Meta};
use crate::{audit, identity, pg, privileged};
use aas_policy::review::{commit_prepared_refusal, may_finish, Finisher};
use aas_policy::{EventKind, Source, Verdict};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::ffi::{CStr, CString};
use std::path::PathBuf;

/// Is this utility statement COMMIT PREPARED or ROLLBACK PREPARED? (Asked
/// of every session's utility statements: a load and two comparisons.)
///
/// # Safety
/// `node` is a valid utility statement.
#[inline]
pub unsafe fn is_finish(node: *const pg_sys::Node) -> bool {
    // SAFETY: per this function's contract.
    unsafe {
        (*node).type_ == pg_sys::NodeTag::T_TransactionStmt
            && matches!(
                (*(node as *const pg_sys::TransactionStmt)).kind,
                pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT_PREPARED
                    | pg_sys::TransactionStmtKind::TRANS_STMT_ROLLBACK_PREPARED
            )
    }
}

/// A review being committed or rolled back by this statement.
pub struct Finishing {
    path: PathBuf,
    meta: Meta,
    commit: bool,
    /// The user to run the command as (the review's owner), with the
    /// user and security context to restore after it.
    switch: Option<(pg_sys::Oid, pg_sys::Oid, i32)>,
}

fn dboid() -> u32 {
    // SAFETY: reads a backend variable.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// The prepared transaction with this gid (its bytes, as PostgreSQL has
/// them) in this database: (xid, owner).
fn prepared(gid: &[u8]) -> Option<(u32, pg_sys::Oid)> {
    privileged::run(|| {
        Spi::connect(|c| {
            let r = c.select(
                &format!(
                    "SELECT p.xid, r.oid FROM {} \
                       JOIN pg_catalog.pg_roles r ON r.rolname = p.owner WHERE p.gid = $1",
                    crate::prepared::HERE
                ),
                None,
                &[gid.to_vec().into()],
            )?;
            let mut out = None;
            for row in r {
                if let (Some(x), Some(o)) = (row.get::<i64>(1)?, row.get::<pg_sys::Oid>(2)?) {
                    out = Some((x as u32, o));
                }
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
    })
    .ok()
    .flatten()
}

/// Who runs this COMMIT or ROLLBACK PREPARED.
fn finisher() -> Finisher {
    // SAFETY: reads backend variables and the catalog.
    let (su, approver) = unsafe {
        let session = pg_sys::GetSessionUserId();
        let approvers = pg_sys::get_role_oid(c"ai_agent_approver".as_ptr(), true);
        (
            pg_sys::superuser_arg(session),
            approvers != pg_sys::InvalidOid && pg_sys::is_member_of_role(session, approvers),
        )
    };
    Finisher {
        session_user: pg::session_user_name(),
        is_agent: identity::session_user_is_agent()
            || identity::session_is_agent()
            || crate::agent_code::running().is_some(),
        is_approver: approver,
        is_superuser: su,
        from_cluster_node: crate::port::from_cluster_node()
            && crate::agent_code::running().is_none(),
    }
}

fn refuse(d: aas_policy::Denial, commit: bool, gid: &str, task: &str) -> ! {
    audit::record_for_task(
        audit::Event {
            operation: if commit {
                "COMMIT PREPARED"
            } else {
                "ROLLBACK PREPARED"
            }
            .into(),
            object: format!("review '{gid}'"),
            reason: d.reason(),
            ..audit::Event::new(Source::Review, EventKind::Refused, Verdict::Refuse)
        },
        task,
    );
    pg::refuse(d)
}

/// Before COMMIT or ROLLBACK PREPARED runs: an agent commits nothing
/// prepared; one that names a review is refused unless this session may
/// finish it, and is told how to run.
///
/// # Safety
/// `node` is a COMMIT PREPARED or ROLLBACK PREPARED statement; inside a
/// transaction.
pub unsafe fn before(node: *const pg_sys::Node) -> Option<Finishing> {
    // SAFETY: per this function's contract.
    let t = unsafe { &*(node as *const pg_sys::TransactionStmt) };
    let commit = t.kind == pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT_PREPARED;
    // SAFETY: the gid of a COMMIT or ROLLBACK PREPARED is a C string.
    let (raw, gid) = unsafe { (CStr::from_ptr(t.gid).to_bytes().to_vec(), pg::cstr(t.gid)) };
    let who = finisher();
    if let Some(d) = commit
        .then(|| commit_prepared_refusal(&who, &gid))
        .flatten()
    {
        refuse(d, commit, &gid, "");
    }
    let (xid, owner) = prepared(&raw)?;
    let (path, meta) = file::read(dboid(), xid)?;
    if meta.gid_bytes != raw {
        return None;
    }
    if let Err(d) = may_finish(&who, commit, &gid, &meta.requested_by) {
        refuse(d, commit, &gid, &meta.task);
    }
    let mut user = pg_sys::InvalidOid;
    let mut context = 0;
    // SAFETY: reads two backend variables into valid out-pointers.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    // SAFETY: a catalog lookup.
    let switch = (user != owner && !unsafe { pg_sys::superuser_arg(user) })
        .then_some((owner, user, context));
    Some(Finishing {
        path,
        meta,
        commit,
        switch,
    })
}

impl Finishing {
    /// Runs the command as the review's owner, when the approver is not it.
    pub fn enter(&self) {
        if let Some((owner, _, context)) = self.switch {
            // SAFETY: sets the current user for the one command; restored in
            // `done`, or by the transaction's abort on error.
            unsafe {
                pg_sys::SetUserIdAndSecContext(
                    owner,
                    context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
                )
            };
        }
    }

    /// The command succeeded: the user is restored, the review's file
    /// becomes its tombstone (first: recording may be interrupted), and the
    /// decision is recorded.
    pub fn done(self) {
        if let Some((_, user, context)) = self.switch {
            // SAFETY: restores what `enter` changed.
            unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
        }
        file::retire(&self.path);
        let by = pg::session_user_name();
        let m = &self.meta;
        let (kind, what) = if self.commit {
            (EventKind::Committed, "committed")
        } else {
            (EventKind::RolledBack, "rolled back")
        };
        audit::record_for_task(
            audit::Event {
                operation: if self.commit {
                    "COMMIT PREPARED"
                } else {
                    "ROLLBACK PREPARED"
                }
                .into(),
                object: format!("review '{}'", m.gid),
                reason: format!(
                    "{by} {what} review '{}' of {} (task {}): {} statements, {} rows",
                    m.gid,
                    m.requested_by,
                    m.task,
                    m.statements.as_array().map_or(0, Vec::len),
                    m.rows
                ),
                ..audit::Event::new(Source::Review, kind, Verdict::Info)
            },
            &m.task,
        );
    }
}

/// The audit writer's pass over its database's reviews: announces each new
/// one on NOTIFY ai_agent_safety_requests, rolls back each expired one
/// (recorded as `expired`), and retires files that match no prepared
/// transaction (a PREPARE that failed, or a review finished while the
/// server was down) once a minute old. Runs outside any transaction.
pub fn tend(dboid: u32) {
    let reviews = file::list(dboid);
    if reviews.is_empty() {
        return;
    }
    let live: Vec<u32> = BackgroundWorker::transaction(|| {
        Spi::connect(|c| {
            let r = c.select(
                "SELECT transaction::text::int8 FROM pg_catalog.pg_prepared_xacts \
                  WHERE database = pg_catalog.current_database()",
                None,
                &[],
            )?;
            let mut out = Vec::new();
            for row in r {
                if let Some(x) = row.get::<i64>(1)? {
                    out.push(x as u32);
                }
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
        .unwrap_or_default()
    });
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    for (path, m) in reviews {
        if !live.contains(&m.xid) {
            if file::age_s(&path) >= 60 {
                file::retire(&path);
            }
            continue;
        }
        // An expired review is rolled back first, whatever its
        // announcement does; it needs none then.
        if aas_policy::review::expired(m.prepared_at_us, m.expires_at_us - m.prepared_at_us, now) {
            expire(&path, &m);
            continue;
        }
        if !file::announced_marker(&path).exists() {
            announce(&m);
            let _ = std::fs::write(file::announced_marker(&path), b"");
        }
    }
    file::sweep_tombstones(dboid);
}

/// The earliest expiry of a review of this database (PostgreSQL
/// timestamp), for the writer's next wake.
pub fn next_expiry(dboid: u32) -> Option<i64> {
    file::list(dboid).iter().map(|(_, m)| m.expires_at_us).min()
}

/// NOTIFY's payload limit is 8000 bytes; the announcement stays well under
/// it (its fields cut by characters, and a bare one past this).
const PAYLOAD_MAX: usize = 7000;

fn cut(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// The announcement of a new review: a glance for a listener, who reads
/// the review itself from pending_reviews (anyone can NOTIFY the channel).
fn payload(m: &Meta) -> String {
    let statements = m.statements.as_array().cloned().unwrap_or_default();
    let full = serde_json::json!({
        "kind": "review",
        "gid": cut(&m.gid, 200),
        "requested_by": m.requested_by,
        "task_id": cut(&m.task, 200),
        "reason": m.reason.as_deref().map(|r| cut(r, 200)),
        "rows": m.rows,
        "statements": statements.len(),
        "expires_at": m.expires_at,
        "first_statements": statements.iter().take(3).map(|s| serde_json::json!({
            "statement": cut(s["statement"].as_str().unwrap_or_default(), 200),
            "rows": s["rows"],
        })).collect::<Vec<_>>(),
    })
    .to_string();
    if full.len() <= PAYLOAD_MAX {
        return full;
    }
    serde_json::json!({
        "kind": "review",
        "gid": cut(&m.gid, 200),
        "requested_by": m.requested_by,
        "rows": m.rows,
        "statements": statements.len(),
    })
    .to_string()
}

/// Announces a review; an error (an encoding the database cannot hold,
/// say) is logged and stops nothing else.
fn announce(m: &Meta) {
    let payload = payload(m);
    BackgroundWorker::transaction(|| {
        // NOTIFY's commit takes a lock of the whole cluster that a session
        // committing notifications of its own holds while it queues them
        // (an agent's can take seconds): the announcement waits its turn,
        // as the load does. Given up after the writer's short lock timeout,
        // the failed commit would end the writer, and the next one, at
        // every pass (adversary finding).
        // SAFETY: inside a transaction; a known setting and a valid value.
        unsafe {
            crate::pg::set_setting(c"lock_timeout", c"0", pg_sys::GucAction::GUC_ACTION_LOCAL)
        };
        let ok = in_subtransaction(|| {
            Spi::run_with_args(
                "SELECT pg_catalog.pg_notify('ai_agent_safety_requests', $1)",
                &[payload.as_str().into()],
            )
            .is_ok()
        });
        if !ok {
            log!("ai_agent_safety: announcing review '{}' failed", m.gid);
        }
    });
}

/// Runs `f` in a subtransaction that is rolled back if it raises: false
/// then (PL/pgSQL's exception-block pattern).
fn in_subtransaction(f: impl FnOnce() -> bool + std::panic::UnwindSafe) -> bool {
    // SAFETY: context and owner saved and restored; the subtransaction is
    // committed or rolled back on every path.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        let ok = PgTryBuilder::new(f).catch_others(|_| false).execute();
        if ok {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        ok
    }
}

/// Rolls back an expired review (as ROLLBACK PREPARED would, in a
/// transaction of its own) and records it. One finished meanwhile is left
/// alone.
fn expire(path: &std::path::Path, m: &Meta) {
    let Ok(gid) = CString::new(m.gid_bytes.clone()) else {
        return;
    };
    let rolled_back = BackgroundWorker::transaction(|| {
        let still = Spi::get_one_with_args::<bool>(
            &format!(
                "SELECT EXISTS (SELECT FROM {} WHERE p.gid = $1 AND p.xid = $2)",
                crate::prepared::HERE
            ),
            &[m.gid_bytes.clone().into(), (m.xid as i64).into()],
        )
        .ok()
        .flatten()
            == Some(true);
        if still {
            crate::prepared::roll_back(&gid);
        }
        still
    });
    if !rolled_back {
        return;
    }
    BackgroundWorker::transaction(|| {
        let r = Spi::run_with_args(
            "INSERT INTO ai_agent_safety.audit_row \
               (ts, database, session_user_name, current_user_name, task_id, source, event, decision, operation, object, reason) \
             VALUES (pg_catalog.now(), pg_catalog.current_database(), $1, $1, $2, 'review', 'expired', 'info', \
                     'ROLLBACK PREPARED', $3, $4)",
            &[
                m.requested_by.as_str().into(),
                m.task.as_str().into(),
                format!("review '{}'", m.gid).as_str().into(),
                format!(
                    "review '{}' of {} (task {}) expired undecided at {} and was rolled back: {} rows not changed",
                    m.gid, m.requested_by, m.task, m.expires_at, m.rows
                )
                .as_str()
                .into(),
            ],
        );
        if let Err(e) = r {
            pgrx::log!(
                "ai_agent_safety: recording the expiry of review '{}' failed: {e}",
                m.gid
            );
        }
    });
    file::retire(path);
}
