//! Row caps: a token may allow its statement to change at most so many rows
//! (the request's `max_rows`, an approver's lower one, or else the rows its
//! preview counted). The glue counts the rows the statement changes, its
//! foreign-key actions and triggers included; this module says what a cap
//! means and how a statement over it is refused.

use crate::api;
use crate::operation::OpClass;
use crate::outcome::Denial;
use crate::sql_comment::{tag, TOKEN_KEY};
use crate::Source;
use uuid::Uuid;

/// The operation classes a cap applies to: those whose rows the executor
/// changes one by one, and counts. TRUNCATE and DROP remove whole objects;
/// their preview says what they hold.
pub fn applies_to(class: OpClass) -> bool {
    matches!(class, OpClass::Delete | OpClass::Update)
}

/// Is `reached` rows over `cap`?
pub fn exceeded(cap: i64, reached: i64) -> bool {
    reached > cap
}

/// The rows changed in one table, by kind: PostgreSQL counts each row
/// inserted, updated or deleted once (a row moved to another partition is
/// deleted there and inserted here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
}

impl Changes {
    pub fn total(&self) -> i64 {
        self.inserted + self.updated + self.deleted
    }

    /// Each kind with its name, in the order the preview shows them.
    pub fn kinds(&self) -> [(&'static str, i64); 3] {
        [
            ("deleted", self.deleted),
            ("updated", self.updated),
            ("inserted", self.inserted),
        ]
    }

    /// The rows of one kind (`deleted`, `updated`, `inserted`).
    pub fn get(&self, kind: &str) -> i64 {
        self.kinds()
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

/// What a token allows its statement to change: at most `max_rows` in all,
/// and, when the request was previewed, in each table at most what the
/// preview counted there, kind by kind (a table the preview did not list:
/// none). So rows only the dry run saw (a trigger's inserts that do not
/// happen again) cannot buy room elsewhere, nor room for inserts a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_rows: Option<i64>,
    /// (table oid, its rows by kind) from the preview.
    pub per_table: Option<Vec<(u32, Changes)>>,
}

impl Limits {
    /// Does the token limit anything (is there something to count)?
    pub fn any(&self) -> bool {
        self.max_rows.is_some() || self.per_table.is_some()
    }
}

/// Why a statement is over what its token allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exceeded {
    /// More rows in all than `max_rows`.
    Total { cap: i64, reached: i64 },
    /// More rows of one kind (`deleted`, `updated`, `inserted`) in one
    /// table than the preview counted there.
    Table {
        relid: u32,
        kind: &'static str,
        allowed: i64,
        reached: i64,
    },
    /// A table's count went down while the statement ran (a table made and
    /// rolled back inside it lowers PostgreSQL's counters): the count cannot
    /// be trusted, so the statement is not taken as within its limits.
    Untrustworthy { relid: u32 },
    /// A table PostgreSQL keeps no counts for (a foreign table) was written
    /// by a query that does not report those rows (a WITH clause, or beside
    /// another write): they cannot be counted, so not held to the cap.
    Uncountable { relid: u32 },
    /// A table whose foreign key changes its own rows (ON DELETE or ON
    /// UPDATE CASCADE, SET NULL, SET DEFAULT) when a distributed table it
    /// references is written: the workers run the key's action on their
    /// shards, and nothing reports those rows.
    CascadesElsewhere { relid: u32 },
}

impl Exceeded {
    /// The table it is about, if one.
    pub fn relid(&self) -> Option<u32> {
        match self {
            Exceeded::Total { .. } => None,
            Exceeded::Table { relid, .. }
            | Exceeded::Untrustworthy { relid }
            | Exceeded::Uncountable { relid }
            | Exceeded::CascadesElsewhere { relid } => Some(*relid),
        }
    }
}

/// Holds what a statement changed (`counted`: rows per table, each the
/// change of the table's counters; `floor`: what the statements reported
/// changing, which no table count can lower) to its token's limits.
pub fn check(limits: &Limits, counted: &[(u32, Changes)], floor: i64) -> Option<Exceeded> {
    if let Some((relid, _)) = counted
        .iter()
        .find(|(_, c)| c.kinds().iter().any(|(_, n)| *n < 0))
    {
        return Some(Exceeded::Untrustworthy { relid: *relid });
    }
    if let Some(per_table) = &limits.per_table {
        for (relid, changed) in counted {
            let allowed = per_table
                .iter()
                .find(|(t, _)| t == relid)
                .map(|(_, c)| *c)
                .unwrap_or_default();
            for (kind, reached) in changed.kinds() {
                if reached > allowed.get(kind) {
                    return Some(Exceeded::Table {
                        relid: *relid,
                        kind,
                        allowed: allowed.get(kind),
                        reached,
                    });
                }
            }
        }
    }
    let reached = counted
        .iter()
        .map(|(_, c)| c.total())
        .sum::<i64>()
        .max(floor);
    match limits.max_rows {
        Some(cap) if exceeded(cap, reached) => Some(Exceeded::Total { cap, reached }),
        _ => None,
    }
}

/// The refusal of a statement held to its token's limits that writes a
/// distributed table outside a transaction block: Citus commits a change to
/// one shard on its worker at once, before the rows are counted here, so a
/// refusal could not take it back.
pub fn outside_transaction_block(what: &str, token: Uuid) -> Denial {
    Denial {
        source: Source::Token,
        message: format!(
            "{what} refused: approval token {token} holds it to a row count, and it changes rows on other servers (a distributed table's), which outside a transaction block may commit there before they are counted; nothing was changed and the token is still unused; run it inside BEGIN ... COMMIT"
        ),
        detail: "Citus sends a change to one shard, outside a transaction block, as a transaction of its own on the worker: a count over the token's limits (its preview or max_rows) could refuse the statement only after those rows were changed. Inside a transaction block a refusal rolls the shards back too.".into(),
        hint: format!(
            "BEGIN; then the statement with {}; then COMMIT;",
            tag(TOKEN_KEY, &token.to_string())
        ),
    }
}

/// Why a statement's rows cannot be counted when `table`'s foreign key
/// cascades its change on other servers (the preview's reason too).
pub fn cascade_not_counted(table: &str) -> String {
    format!(
        "a foreign key of {table} carries it to {table}'s rows on the servers that hold them (ON DELETE or ON UPDATE CASCADE, SET NULL or SET DEFAULT, of a distributed table), which nothing counts"
    )
}

fn rows(n: i64) -> String {
    if n == 1 {
        "1 row".to_string()
    } else {
        format!("{n} rows")
    }
}

/// The refusal for `e`; `table` names the table it is about, if any.
pub fn refusal(what: &str, token: Uuid, e: &Exceeded, table: &str) -> Denial {
    match e {
        Exceeded::Total { cap, reached } => over_cap(what, token, *cap, *reached),
        Exceeded::Table {
            kind,
            allowed,
            reached,
            ..
        } => Denial {
            source: Source::Token,
            message: format!(
                "{what} refused: it {kind} {} in {table}, where the preview approved with token {token} counted {} {kind}, so nothing was changed and the token is still unused; request a new token, whose preview shows the effect now",
                rows(*reached),
                rows(*allowed)
            ),
            detail: format!(
                "A previewed token allows in each table at most the rows its preview counted there, deleted, updated and inserted apart (none in a table the preview did not list). {table}: {} {kind} approved, {} {kind}.",
                rows(*allowed),
                rows(*reached)
            ),
            hint: format!(
                "Request it again, so that the approver sees the effect it has now: SELECT {};",
                api::call_named(
                    "request_approval_token",
                    &[("<operation>", "text"), ("<task id>", "text")],
                    &[("statement", "<statement>", "text")]
                )
            ),
        },
        Exceeded::Uncountable { .. } => Denial {
            source: Source::Token,
            message: format!(
                "{what} refused: it wrote {table}, whose rows are another server's (a foreign or distributed table), in a way whose rows cannot be counted against approval token {token}; nothing was changed and the token is still unused; write such a table only as the statement's own target"
            ),
            detail: "PostgreSQL keeps no per-table counts here for a foreign or distributed table: its rows count only as the query that writes it reports them, which a WITH clause's write, or one beside another write, does not.".into(),
            hint: format!(
                "Write {table} with a statement of its own, such as DELETE FROM {table} WHERE ..., with {}.",
                tag(TOKEN_KEY, &token.to_string())
            ),
        },
        Exceeded::CascadesElsewhere { .. } => Denial {
            source: Source::Token,
            message: format!(
                "{what} refused: {}, so the rows it changed cannot be counted against approval token {token}; nothing was changed and the token is still unused; change {table}'s rows first, with a statement of its own",
                cascade_not_counted(table)
            ),
            detail: "A distributed table's rows are its shards' on the workers, and so are the rows its foreign keys' actions change: the statement reports its own table's rows only, and no per-table count here sees the others.".into(),
            hint: format!(
                "Change the referencing rows first, with a statement of its own, such as DELETE FROM {table} WHERE ..., then this one again, each with {}.",
                tag(TOKEN_KEY, &token.to_string())
            ),
        },
        Exceeded::Untrustworthy { .. } => Denial {
            source: Source::Token,
            message: format!(
                "{what} refused: the row count of {table} went down while the statement ran, so the rows it changed cannot be counted against approval token {token}; nothing was changed and the token is still unused; run the statement without creating or emptying tables inside it"
            ),
            detail: "A table created and rolled back, or emptied, inside the statement (by a trigger or function it set off) lowers PostgreSQL's per-table counters that the cap is counted with; a count that went down is not taken as within the cap.".into(),
            hint: format!(
                "Run the approved statement alone, with {}, with no trigger or function of its that creates, drops or truncates tables.",
                tag(TOKEN_KEY, &token.to_string())
            ),
        },
    }
}

/// The refusal of a statement that changed more rows than its token allows.
/// Raised before the statement ends, so nothing it did is kept and the
/// token stays unused.
pub fn over_cap(what: &str, token: Uuid, cap: i64, reached: i64) -> Denial {
    Denial {
        source: Source::Token,
        message: format!(
            "{what} refused: it changed {}, over the cap of {} that approval token {token} allows, so nothing was changed and the token is still unused; narrow the statement, or request a new token with max_rows => <rows>",
            rows(reached),
            rows(cap)
        ),
        detail: format!(
            "Approval token {token} allows at most {} (its cap: the request's max_rows, the approver's, or the rows its preview counted). The statement had changed {} when it was stopped, counting the rows its foreign-key actions and triggers changed.",
            rows(cap),
            rows(reached)
        ),
        hint: format!(
            "Change fewer rows and run the statement again with {}, or ask for more: SELECT {};",
            tag(TOKEN_KEY, &token.to_string()),
            api::call_named(
                "request_approval_token",
                &[("<operation>", "text"), ("<task id>", "text")],
                &[("statement", "<statement>", "text"), ("max_rows", "<rows>", "bigint")]
            )
        ),
    }
}

/// The refusal of a capped statement when its rows cannot be counted
/// (PostgreSQL's `track_counts` is off): a cap that cannot be checked is
/// not taken as met.
pub fn cannot_count(what: &str, token: Uuid) -> Denial {
    Denial {
        source: Source::Token,
        message: format!(
            "{what} refused: approval token {token} caps the rows it may change, and they cannot be counted here because track_counts is off; the token is still unused; a DBA must turn track_counts on"
        ),
        detail: "ai_agent_safety counts the rows a capped statement changes with PostgreSQL's own per-table counters, which track_counts turns off.".into(),
        hint: "A DBA runs: ALTER SYSTEM SET track_counts = on; SELECT pg_catalog.pg_reload_conf();".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Uuid {
        Uuid::parse_str("8c2952f6-081c-488d-b9ff-9afcc9069553").unwrap()
    }

    #[test]
    fn a_cap_applies_to_row_by_row_operations_only() {
        assert!(applies_to(OpClass::Delete));
        assert!(applies_to(OpClass::Update));
        assert!(!applies_to(OpClass::Truncate));
        assert!(!applies_to(OpClass::Drop));
        assert!(!applies_to(OpClass::Alter));
    }

    #[test]
    fn the_cap_itself_is_allowed_one_more_is_not() {
        assert!(!exceeded(10, 10));
        assert!(!exceeded(10, 0));
        assert!(exceeded(10, 11));
    }

    #[test]
    fn the_refusal_says_cap_count_and_that_nothing_changed() {
        let d = over_cap("DELETE on public.orders", id(), 10, 11);
        assert_eq!(d.source, Source::Token);
        assert!(d.message.starts_with(
            "DELETE on public.orders refused: it changed 11 rows, over the cap of 10 rows"
        ));
        assert!(d.message.contains("the token is still unused"));
        assert!(d.detail.contains("at most 10 rows"), "{}", d.detail);
        assert!(d.detail.contains("had changed 11 rows"), "{}", d.detail);
        assert!(d
            .hint
            .contains("/*ai_agent_safety_token='8c2952f6-081c-488d-b9ff-9afcc9069553'*/"));
        assert!(
            d.hint.contains("ai_agent_safety.request_approval_token('<operation>'::text, '<task id>'::text, statement => '<statement>'::text, max_rows => '<rows>'::bigint)"),
            "{}",
            d.hint
        );
        let one = over_cap("DELETE on public.orders", id(), 1, 2);
        assert!(one.message.contains("cap of 1 row "), "{}", one.message);
    }

    fn limits(max_rows: Option<i64>, per_table: Option<Vec<(u32, Changes)>>) -> Limits {
        Limits {
            max_rows,
            per_table,
        }
    }

    fn del(n: i64) -> Changes {
        Changes {
            deleted: n,
            ..Changes::default()
        }
    }

    fn ins(n: i64) -> Changes {
        Changes {
            inserted: n,
            ..Changes::default()
        }
    }

    #[test]
    fn the_total_is_held_to_max_rows_and_the_reported_rows_are_its_floor() {
        let l = limits(Some(10), None);
        assert_eq!(check(&l, &[(1, del(6)), (2, ins(4))], 0), None);
        assert_eq!(
            check(&l, &[(1, del(6)), (2, ins(5))], 0),
            Some(Exceeded::Total {
                cap: 10,
                reached: 11
            })
        );
        // A foreign table's rows are only in what the statement reported.
        assert_eq!(
            check(&l, &[(1, del(0))], 12),
            Some(Exceeded::Total {
                cap: 10,
                reached: 12
            })
        );
        assert_eq!(check(&limits(None, None), &[(1, del(1_000_000))], 0), None);
    }

    #[test]
    fn a_preview_limits_each_table_and_unlisted_tables_get_nothing() {
        // The preview: 4 deleted in table 1, 999 inserted in table 2 (a
        // trigger's inserts during the dry run); cap 1003 in all.
        let l = limits(Some(1003), Some(vec![(1, del(4)), (2, ins(999))]));
        assert_eq!(check(&l, &[(1, del(4)), (2, ins(999))], 4), None);
        assert_eq!(check(&l, &[(1, del(3)), (2, ins(0))], 3), None);
        // The inserts do not happen again: their room is not the delete's.
        assert_eq!(
            check(&l, &[(1, del(999)), (2, ins(0))], 999),
            Some(Exceeded::Table {
                relid: 1,
                kind: "deleted",
                allowed: 4,
                reached: 999
            })
        );
        assert_eq!(
            check(&l, &[(1, del(4)), (3, ins(1))], 4),
            Some(Exceeded::Table {
                relid: 3,
                kind: "inserted",
                allowed: 0,
                reached: 1
            })
        );
    }

    #[test]
    fn room_for_one_kind_of_change_is_not_room_for_another() {
        // The preview saw 50 rows inserted in table 2 (an audit trigger);
        // deleting 50 rows there instead is not what was approved.
        let l = limits(Some(51), Some(vec![(1, del(1)), (2, ins(50))]));
        assert_eq!(
            check(&l, &[(1, del(1)), (2, del(50))], 1),
            Some(Exceeded::Table {
                relid: 2,
                kind: "deleted",
                allowed: 0,
                reached: 50
            })
        );
        let upd = Changes {
            updated: 3,
            ..Changes::default()
        };
        assert_eq!(upd.total(), 3);
        assert_eq!(upd.get("updated"), 3);
        assert_eq!(upd.get("deleted"), 0);
        let l = limits(Some(3), Some(vec![(1, upd)]));
        assert_eq!(check(&l, &[(1, upd)], 3), None);
        assert_eq!(
            check(&l, &[(1, del(3))], 3).and_then(|e| e.relid()),
            Some(1)
        );
    }

    #[test]
    fn a_count_that_went_down_is_never_taken_as_within_the_cap() {
        let l = limits(Some(2), None);
        assert_eq!(
            check(&l, &[(1, del(1000)), (7, ins(-100_000))], 0),
            Some(Exceeded::Untrustworthy { relid: 7 })
        );
        let d = refusal(
            "DELETE on public.accounts",
            id(),
            &Exceeded::Untrustworthy { relid: 7 },
            "pg_temp_3.h",
        );
        assert!(
            d.message.contains("the row count of pg_temp_3.h went down"),
            "{}",
            d.message
        );
        let d = refusal(
            "DELETE on public.accounts",
            id(),
            &Exceeded::Table {
                relid: 1,
                kind: "deleted",
                allowed: 4,
                reached: 999,
            },
            "public.accounts",
        );
        assert!(
            d.message.contains(
                "it deleted 999 rows in public.accounts, where the preview approved with token"
            ) && d.message.contains("counted 4 rows deleted"),
            "{}",
            d.message
        );
        assert!(
            d.detail
                .contains("public.accounts: 4 rows deleted approved, 999 rows deleted."),
            "{}",
            d.detail
        );
    }

    #[test]
    fn rows_written_to_a_foreign_table_that_cannot_be_counted_are_refused() {
        let e = Exceeded::Uncountable { relid: 9 };
        assert_eq!(e.relid(), Some(9));
        let d = refusal(
            "DELETE on public.remote_orders",
            id(),
            &e,
            "public.remote_orders",
        );
        assert_eq!(d.source, Source::Token);
        assert!(
            d.message.starts_with(
                "DELETE on public.remote_orders refused: it wrote public.remote_orders, whose rows are another server's (a foreign or distributed table), in a way whose rows cannot be counted"
            ),
            "{}",
            d.message
        );
        assert!(d.message.contains("the token is still unused"));
        assert!(d.hint.contains("DELETE FROM public.remote_orders WHERE"));
        assert!(d
            .hint
            .contains("/*ai_agent_safety_token='8c2952f6-081c-488d-b9ff-9afcc9069553'*/"));
    }

    #[test]
    fn rows_a_foreign_key_cascades_to_on_other_servers_are_refused() {
        let e = Exceeded::CascadesElsewhere { relid: 11 };
        assert_eq!(e.relid(), Some(11));
        let d = refusal("DELETE on public.customers", id(), &e, "public.orders");
        assert_eq!(d.source, Source::Token);
        assert!(
            d.message.starts_with(
                "DELETE on public.customers refused: a foreign key of public.orders carries it to public.orders's rows on the servers that hold them"
            ),
            "{}",
            d.message
        );
        assert!(d.message.contains("the token is still unused"));
        assert!(d.hint.contains("DELETE FROM public.orders WHERE"));
        assert!(d
            .hint
            .contains("/*ai_agent_safety_token='8c2952f6-081c-488d-b9ff-9afcc9069553'*/"));
    }

    #[test]
    fn a_capped_distributed_write_outside_a_transaction_block_is_refused() {
        let d = outside_transaction_block("DELETE on public.orders", id());
        assert_eq!(d.source, Source::Token);
        assert!(
            d.message.starts_with("DELETE on public.orders refused: approval token 8c2952f6-081c-488d-b9ff-9afcc9069553 holds it to a row count"),
            "{}",
            d.message
        );
        assert!(d.message.contains("the token is still unused"));
        assert!(d.hint.starts_with("BEGIN; then the statement with /*ai_agent_safety_token='8c2952f6-081c-488d-b9ff-9afcc9069553'*/"));
    }

    #[test]
    fn an_uncountable_cap_is_refused_with_the_dbas_fix() {
        let d = cannot_count("UPDATE on public.orders", id());
        assert!(d.message.contains("track_counts is off"));
        assert!(d.hint.contains("ALTER SYSTEM SET track_counts = on;"));
    }
}
