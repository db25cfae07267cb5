//! Reviewed transactions: an agent does the work, a human commits it.
//!
//! After `ai_agent_safety.begin_review(task, reason)` in a transaction
//! block, the agent's protected row changes (DELETE, UPDATE) run without
//! tokens; what would hold exclusive locks while a person reads (DROP,
//! TRUNCATE, ALTER) is still refused. The transaction cannot COMMIT: the
//! agent ends it with PREPARE TRANSACTION, and an approver, never the
//! requester nor any agent, runs COMMIT PREPARED (or ROLLBACK PREPARED). A
//! review not decided within `ai_agent_safety.review_ttl` is rolled back.
//! This module says which statements a review covers, who may finish one,
//! and how each refusal reads; the glue keeps the review's state.

use crate::api;
use crate::audit::Source;
use crate::operation::{OpClass, Operation};
use crate::outcome::Denial;

/// The operation classes a review lets run without a token: row changes,
/// which hold row locks only and are undone by a rollback.
pub fn covers(class: OpClass) -> bool {
    matches!(class, OpClass::Delete | OpClass::Update)
}

/// A gid for the agent to prepare its review under, from its task.
pub fn suggested_gid(task: &str) -> String {
    let clean: String = task
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    format!("review_{clean}")
}

fn quoted(gid: &str) -> String {
    format!("'{}'", gid.replace('\'', "''"))
}

/// The refusal of an operation a review does not cover.
pub fn uncovered_denial(session_user: &str, task: &str, ops: &[&Operation]) -> Denial {
    let what: Vec<String> = ops.iter().map(|o| o.describe()).collect();
    Denial {
        source: Source::Guard,
        message: format!(
            "{} refused: agent role \"{session_user}\" is in a review (task {task}), which covers DELETE and UPDATE only",
            what.join(", ")
        ),
        detail: "DROP, TRUNCATE and ALTER take locks that would block the database while a person reads the review, so a review does not cover them, and no approval token does inside one.".into(),
        hint: format!(
            "Leave them out of the review, and after it (PREPARE TRANSACTION), request a token for each in a transaction of its own: SELECT {};",
            api::call(
                "request_approval_token",
                &[("<operation>", "text"), (task, "text"), ("<target>", "text")]
            )
        ),
    }
}

/// The refusal of COMMIT (or an implicit commit) in a review.
pub fn commit_denial(session_user: &str, task: &str) -> Denial {
    let gid = suggested_gid(task);
    Denial {
        source: Source::Guard,
        message: format!(
            "COMMIT refused: agent role \"{session_user}\" is in a review (task {task}); a human commits its work, so the transaction ends with PREPARE TRANSACTION, and nothing it did was kept"
        ),
        detail: "ai_agent_safety.begin_review makes the transaction's changes wait for an approver: they take effect only when an approver runs COMMIT PREPARED.".into(),
        hint: format!(
            "Run the work again after SELECT {}; in a transaction block, and end it with PREPARE TRANSACTION {};",
            api::call("begin_review", &[(task, "text"), ("<reason>", "text")]),
            quoted(&gid)
        ),
    }
}

/// Who is finishing a prepared review, and whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finisher {
    pub session_user: String,
    /// The session is an agent's (session or current user).
    pub is_agent: bool,
    pub is_approver: bool,
    pub is_superuser: bool,
    /// Sent by another node of the cluster over its certificate's
    /// connection (`crate::SessionFacts::from_cluster_node`): Citus commits
    /// every worker's part of a distributed transaction this way.
    pub from_cluster_node: bool,
}

/// Is `who`'s COMMIT PREPARED refused before anything else is read? An
/// agent commits nothing prepared (it prepares only reviews, an approver's
/// to commit), unless the node that coordinates a distributed transaction
/// commits the agent's part of it.
pub fn commit_prepared_refusal(who: &Finisher, gid: &str) -> Option<Denial> {
    (who.is_agent && !who.from_cluster_node).then(|| agent_commit_denial(&who.session_user, gid))
}

/// May `who` COMMIT PREPARED (`commit`) or ROLLBACK PREPARED the review
/// `gid` that `requested_by` prepared? Committing is an approver's (or a
/// superuser's), never the requester's nor any agent's; the requester may
/// withdraw its own review with ROLLBACK PREPARED.
pub fn may_finish(
    who: &Finisher,
    commit: bool,
    gid: &str,
    requested_by: &str,
) -> Result<(), Denial> {
    let verb = if commit {
        "COMMIT PREPARED"
    } else {
        "ROLLBACK PREPARED"
    };
    let own = who.session_user == requested_by;
    if !commit && own {
        return Ok(());
    }
    let why = if who.is_agent {
        Some(format!(
            "agent role \"{}\" may not decide a review",
            who.session_user
        ))
    } else if own {
        Some(format!(
            "\"{}\" requested the review and may not approve it",
            who.session_user
        ))
    } else if !(who.is_approver || who.is_superuser) {
        Some(format!(
            "role \"{}\" is not an approver (a member of ai_agent_approver)",
            who.session_user
        ))
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(Denial {
            source: Source::Guard,
            message: format!(
                "{verb} {} refused: it is a review requested by \"{requested_by}\", and {why}",
                quoted(gid)
            ),
            detail: "A review's transaction is committed by an approver who did not request it, as approval tokens are granted.".into(),
            hint: if commit {
                format!(
                    "An approver reads it in SELECT * FROM ai_agent_safety.pending_reviews; and runs COMMIT PREPARED {0}; or ROLLBACK PREPARED {0};",
                    quoted(gid)
                )
            } else {
                format!(
                    "The requester or an approver runs ROLLBACK PREPARED {};",
                    quoted(gid)
                )
            },
        }),
    }
}

/// The refusal of an agent's COMMIT PREPARED: agents prepare nothing but
/// reviews, and a review is an approver's to commit.
pub fn agent_commit_denial(agent: &str, gid: &str) -> Denial {
    Denial {
        source: Source::Guard,
        message: format!(
            "COMMIT PREPARED {} refused: agent role \"{agent}\" may not commit prepared transactions",
            quoted(gid)
        ),
        detail: "An agent prepares only reviews, and a review's transaction is committed by an approver who did not request it.".into(),
        hint: "An approver reads it in SELECT * FROM ai_agent_safety.pending_reviews; and runs its to_commit command.".into(),
    }
}

/// The refusal of a review prepared under a name an earlier review had (in
/// any database: gids are the cluster's): an approver who read the earlier
/// one would commit this one by the same command.
pub fn gid_reused_denial(gid: &str, task: &str) -> Denial {
    Denial {
        source: Source::Guard,
        message: format!(
            "PREPARE TRANSACTION {} refused: a review was prepared under that name in the last 7 days, and an approver may still be reading it; nothing of this transaction was kept",
            quoted(gid)
        ),
        detail: "A review's name is what an approver commits by, so each review gets a name of its own (names are remembered for 7 days).".into(),
        hint: format!(
            "Run the work again and prepare it under a new name, such as PREPARE TRANSACTION {};",
            quoted(&format!("{}-2", suggested_gid(task)))
        ),
    }
}

/// The refusal of a table lock stronger than row changes take (`mode`, as
/// LOCK TABLE writes it) in a review: it would block the table while a
/// person reads.
pub fn lock_denial(session_user: &str, task: &str, mode: &str) -> Denial {
    Denial {
        source: Source::Guard,
        message: format!(
            "LOCK TABLE ... IN {mode} MODE refused: agent role \"{session_user}\" is in a review (task {task}), which may hold only the locks its row changes take"
        ),
        detail: "A review's locks last until an approver decides (up to ai_agent_safety.review_ttl), past the agent's session: a table lock would block the table all that time.".into(),
        hint: "Leave the LOCK TABLE out of the review; row changes lock only their rows.".into(),
    }
}

/// The refusal to prepare a review that holds a table lock (`mode`, as
/// pg_locks names it without "Lock") stronger than row changes take on a
/// table another role owns.
pub fn held_lock_denial(session_user: &str, task: &str, table: &str, mode: &str) -> Denial {
    Denial {
        source: Source::Guard,
        message: format!(
            "PREPARE TRANSACTION refused: the review of agent role \"{session_user}\" (task {task}) holds a {mode} lock on {table}, which would block that table while a person reads; nothing of this transaction was kept"
        ),
        detail: "A review may hold only the locks its row changes take on other roles' tables: its locks last until an approver decides. Adding a foreign key to another role's table, for one, locks that table against writes.".into(),
        hint: "Run the work again without the statement that takes that lock (a DBA makes such schema changes).".into(),
    }
}

/// Why `begin_review` cannot start a review here, if it cannot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeginFacts {
    pub is_agent: bool,
    pub in_transaction_block: bool,
    pub require_approval: bool,
    pub database: String,
    pub max_prepared_transactions: i32,
    pub already: Option<String>,
    pub task: Option<String>,
}

/// The error `begin_review` raises, as (message, hint), if any.
pub fn begin_error(f: &BeginFacts) -> Option<(String, String)> {
    let task = f.task.as_deref().map(str::trim).unwrap_or("");
    if task.is_empty() {
        return Some((
            "begin_review needs a task id".into(),
            format!(
                "SELECT {};",
                api::call(
                    "begin_review",
                    &[("<task id>", "text"), ("<reason>", "text")]
                )
            ),
        ));
    }
    if task.chars().count() > 200 {
        return Some((
            "the task id is longer than 200 characters".into(),
            "Use a shorter task id.".into(),
        ));
    }
    if !f.is_agent {
        return Some((
            "begin_review is for agent sessions: a review holds an agent's work for an approver"
                .into(),
            "Connect as the agent role, or commit your own work as usual.".into(),
        ));
    }
    if let Some(t) = &f.already {
        return Some((
            format!("this transaction is already a review (task {t})"),
            "One review per transaction: end it with PREPARE TRANSACTION first.".into(),
        ));
    }
    if !f.in_transaction_block {
        return Some((
            "begin_review must run inside a transaction block".into(),
            format!(
                "BEGIN; SELECT {}; ... PREPARE TRANSACTION {};",
                api::call("begin_review", &[(task, "text"), ("<reason>", "text")]),
                quoted(&suggested_gid(task))
            ),
        ));
    }
    if !f.require_approval {
        return Some((
            format!(
                "database \"{}\" does not have ai_agent_safety.require_approval on, so there is nothing to review",
                f.database
            ),
            "Run the work as usual; reviews are for databases whose changes need approval.".into(),
        ));
    }
    if f.max_prepared_transactions <= 0 {
        return Some((
            "reviews need prepared transactions, and max_prepared_transactions is 0 on this server"
                .into(),
            "A DBA runs: ALTER SYSTEM SET max_prepared_transactions = 10; and restarts the server."
                .into(),
        ));
    }
    None
}

/// Has a review prepared at `prepared_at_us` expired at `now_us` under a
/// time to live of `ttl_us`?
pub fn expired(prepared_at_us: i64, ttl_us: i64, now_us: i64) -> bool {
    now_us >= prepared_at_us.saturating_add(ttl_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_coordinating_node_commits_an_agents_prepared_part() {
        let agent = who("bot", true, false, false);
        let d = commit_prepared_refusal(&agent, "citus_0_1_2_3").unwrap();
        assert!(d.message.contains("may not commit prepared transactions"));
        let node = Finisher {
            from_cluster_node: true,
            ..who("bot", true, false, false)
        };
        assert!(commit_prepared_refusal(&node, "citus_0_1_2_3").is_none());
        assert!(commit_prepared_refusal(&who("dba", false, true, false), "g").is_none());
    }

    #[test]
    fn a_review_covers_row_changes_only() {
        assert!(covers(OpClass::Delete));
        assert!(covers(OpClass::Update));
        assert!(!covers(OpClass::Drop));
        assert!(!covers(OpClass::Truncate));
        assert!(!covers(OpClass::Alter));
    }

    #[test]
    fn the_suggested_gid_is_safe_to_quote() {
        assert_eq!(suggested_gid("cleanup-7"), "review_cleanup-7");
        assert_eq!(suggested_gid("a b'c"), "review_a_b_c");
        assert!(suggested_gid(&"x".repeat(500)).len() <= 107);
    }

    fn who(user: &str, agent: bool, approver: bool, su: bool) -> Finisher {
        Finisher {
            session_user: user.into(),
            is_agent: agent,
            is_approver: approver,
            is_superuser: su,
            from_cluster_node: false,
        }
    }

    #[test]
    fn only_an_approver_who_did_not_ask_commits() {
        assert!(may_finish(&who("dba", false, true, false), true, "g", "bot").is_ok());
        assert!(may_finish(&who("postgres", false, false, true), true, "g", "bot").is_ok());
        let d = may_finish(&who("bot", true, false, false), true, "g", "bot").unwrap_err();
        assert_eq!(
            d.message,
            "COMMIT PREPARED 'g' refused: it is a review requested by \"bot\", and agent role \"bot\" may not decide a review"
        );
        assert!(d.hint.contains("ai_agent_safety.pending_reviews"));
        let d = may_finish(&who("bot2", true, true, false), true, "g", "bot").unwrap_err();
        assert!(d.message.contains("may not decide a review"));
        let d = may_finish(&who("app", false, false, false), true, "g", "bot").unwrap_err();
        assert!(d.message.contains("is not an approver"), "{}", d.message);
        // A human who (somehow) requested it does not approve it either.
        let d = may_finish(&who("dba", false, true, false), true, "g", "dba").unwrap_err();
        assert!(d
            .message
            .contains("requested the review and may not approve it"));
    }

    #[test]
    fn the_requester_may_withdraw_its_own_review() {
        assert!(may_finish(&who("bot", true, false, false), false, "g", "bot").is_ok());
        assert!(may_finish(&who("dba", false, true, false), false, "g", "bot").is_ok());
        let d = may_finish(&who("bot2", true, false, false), false, "g'1", "bot").unwrap_err();
        assert!(
            d.message.starts_with("ROLLBACK PREPARED 'g''1' refused"),
            "{}",
            d.message
        );
    }

    fn facts() -> BeginFacts {
        BeginFacts {
            is_agent: true,
            in_transaction_block: true,
            require_approval: true,
            database: "prod".into(),
            max_prepared_transactions: 5,
            already: None,
            task: Some("t-1".into()),
        }
    }

    #[test]
    fn begin_review_says_what_is_missing() {
        assert_eq!(begin_error(&facts()), None);
        let cases: [(BeginFacts, &str); 6] = [
            (
                BeginFacts {
                    task: None,
                    ..facts()
                },
                "needs a task id",
            ),
            (
                BeginFacts {
                    is_agent: false,
                    ..facts()
                },
                "is for agent sessions",
            ),
            (
                BeginFacts {
                    already: Some("t-0".into()),
                    ..facts()
                },
                "already a review (task t-0)",
            ),
            (
                BeginFacts {
                    in_transaction_block: false,
                    ..facts()
                },
                "inside a transaction block",
            ),
            (
                BeginFacts {
                    require_approval: false,
                    ..facts()
                },
                "does not have ai_agent_safety.require_approval on",
            ),
            (
                BeginFacts {
                    max_prepared_transactions: 0,
                    ..facts()
                },
                "max_prepared_transactions is 0",
            ),
        ];
        for (f, want) in cases {
            let (m, h) = begin_error(&f).expect(want);
            assert!(m.contains(want), "{m}");
            assert!(!h.is_empty());
        }
        let (_, h) = begin_error(&BeginFacts {
            max_prepared_transactions: 0,
            ..facts()
        })
        .unwrap();
        assert!(h.contains("ALTER SYSTEM SET max_prepared_transactions"));
        let (_, h) = begin_error(&BeginFacts {
            in_transaction_block: false,
            ..facts()
        })
        .unwrap();
        assert!(h.contains("PREPARE TRANSACTION 'review_t-1';"), "{h}");
    }

    #[test]
    fn commit_in_a_review_points_to_prepare() {
        let d = commit_denial("bot", "t-1");
        assert!(d
            .message
            .starts_with("COMMIT refused: agent role \"bot\" is in a review (task t-1)"));
        assert!(
            d.hint.contains("PREPARE TRANSACTION 'review_t-1';"),
            "{}",
            d.hint
        );
        assert!(d
            .hint
            .contains("ai_agent_safety.begin_review('t-1'::text, '<reason>'::text)"));
    }

    #[test]
    fn agents_commit_nothing_prepared_and_names_are_not_reused() {
        let d = agent_commit_denial("bot", "g");
        assert_eq!(
            d.message,
            "COMMIT PREPARED 'g' refused: agent role \"bot\" may not commit prepared transactions"
        );
        let d = gid_reused_denial("review_t-1", "t-1");
        assert!(d.message.starts_with(
            "PREPARE TRANSACTION 'review_t-1' refused: a review was prepared under that name"
        ));
        assert!(
            d.hint.contains("PREPARE TRANSACTION 'review_t-1-2';"),
            "{}",
            d.hint
        );
        let d = held_lock_denial("bot", "t-1", "public.orders", "ShareRowExclusive");
        assert!(d
            .message
            .contains("holds a ShareRowExclusive lock on public.orders"));
        let d = lock_denial("bot", "t-1", "ACCESS EXCLUSIVE");
        assert!(d
            .message
            .starts_with("LOCK TABLE ... IN ACCESS EXCLUSIVE MODE refused: agent role \"bot\" is in a review (task t-1)"));
    }

    #[test]
    fn reviews_expire_after_their_ttl() {
        assert!(!expired(1_000, 500, 1_499));
        assert!(expired(1_000, 500, 1_500));
        assert!(!expired(1_000, i64::MAX, i64::MAX - 1));
    }
}
