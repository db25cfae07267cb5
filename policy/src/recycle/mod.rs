//! The recycle bin: what an agent destroys is kept for a retention period
//! instead of going for good, even when a human approved it. This module
//! decides when something is kept, what the kept thing is called, when it
//! expires, and how a restore is refused; the glue moves the objects.
//!
//! Kept so far: databases (an agent's DROP DATABASE renames the database to
//! its recycle name and closes it to connections; its name is free at
//! once, and `restore_dropped` renames it back).

use crate::api;
use crate::audit::Source;
use crate::outcome::Denial;

/// The setting that turns the recycle bin off (0) or sets how long it keeps.
pub const RETENTION_SETTING: &str = "ai_agent_safety.recycle_retention";

/// PostgreSQL's longest name, in bytes (NAMEDATALEN - 1).
const MAX_NAME: usize = 63;

/// Is an allowed DROP kept instead of done? For agents' statements, when
/// the recycle bin is on; another role's DROP drops.
pub fn keeps(agent_statement: bool, retention_s: i64) -> bool {
    agent_statement && retention_s > 0
}

/// The name a kept database takes: `recycled_<entry id>_<original>`, cut
/// at a character boundary to PostgreSQL's 63 bytes. The id ties the name
/// to its entry (ids are never handed out twice in a cluster).
pub fn recycled_name(original: &str, id: u32) -> String {
    cut(format!("recycled_{id}_"), original)
}

/// `prefix` followed by as much of `original` as fits PostgreSQL's 63
/// bytes, cut at a character boundary.
pub(crate) fn cut(mut name: String, original: &str) -> String {
    for c in original.chars() {
        if name.len() + c.len_utf8() > MAX_NAME {
            break;
        }
        name.push(c);
    }
    name
}

/// `ai_agent_safety.restore_dropped(<id>, new_name => <name>)`, as a hint
/// writes it.
pub(crate) fn restore_call_with_new_name(id: u32, new_name: &str) -> String {
    api::call_named(
        "restore_dropped",
        &[(&id.to_string(), "bigint")],
        &[("new_name", new_name, "text")],
    )
}

/// Does the entry's database, now named `name`, still hold the entry kept
/// as `recycled`? Only while it keeps that name, closed to connections (an
/// entry whose rename was rolled back, or that was restored, is not one).
pub fn is_held(name: &str, recycled: &str, allows_connections: bool) -> bool {
    !allows_connections && name == recycled
}

/// When an entry kept at `at_us` with `retention_s` expires (microseconds).
pub fn expires_at(at_us: i64, retention_s: i64) -> i64 {
    at_us.saturating_add(retention_s.saturating_mul(1_000_000))
}

pub fn expired(expires_at_us: i64, now_us: i64) -> bool {
    now_us >= expires_at_us
}

/// The NOTICE the agent sees: the DROP succeeded, and where the thing went.
pub fn kept_notice(kind: &str, object: &str, id: u32, recycled: &str, retention_s: i64) -> String {
    format!(
        "{kind} {object} was moved to the recycle bin as entry {id} ({recycled}) for {}; an approver can restore it with SELECT {}",
        duration_text(retention_s),
        api::call("restore_dropped", &[(&id.to_string(), "bigint")])
    )
}

/// The NOTICE of a TRUNCATE whose rows were kept: how many, when the
/// session may read every table emptied (`None` otherwise: PostgreSQL's
/// TRUNCATE tells no count, and TRUNCATE needs no SELECT).
pub fn kept_rows_notice(object: &str, rows: Option<i64>, id: u32, retention_s: i64) -> String {
    let rows = rows.map(|n| format!("{n} ")).unwrap_or_default();
    format!(
        "the {rows}rows of {object} were kept in the recycle bin as entry {id} for {}; an approver can put them back with SELECT {}",
        duration_text(retention_s),
        api::call("restore_dropped", &[(&id.to_string(), "bigint")])
    )
}

/// The NOTICE of a DELETE whose rows, or an UPDATE whose rows' old
/// versions, were kept (`kind`: `delete` or `update`).
pub fn kept_old_rows_notice(
    kind: &str,
    object: &str,
    rows: i64,
    id: u32,
    retention_s: i64,
) -> String {
    let what = if kind == "update" {
        format!("the old versions of the {rows} updated rows of {object} were")
    } else {
        format!("the {rows} deleted rows of {object} were")
    };
    format!(
        "{what} kept in the recycle bin as entry {id} for {}; an approver can put them back with SELECT {}",
        duration_text(retention_s),
        api::call("restore_dropped", &[(&id.to_string(), "bigint")])
    )
}

/// Does an entry of this kind hold rows (copies), rather than objects?
pub fn holds_rows(kind: &str) -> bool {
    matches!(kind, "truncate" | "delete" | "update")
}

/// What was done to an entry's rows, for messages: `truncated`, `deleted`.
pub fn rows_verb_past(kind: &str) -> &'static str {
    match kind {
        "delete" => "deleted",
        "update" => "updated",
        "truncate" => "truncated",
        _ => "dropped",
    }
}

/// A retention as a person says it: `7 days`, `1 hour`, `90 seconds`.
pub fn duration_text(s: i64) -> String {
    let (n, unit) = match s {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s >= 3_600 && s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The name a restore gives back: `new_name`, or else the original one,
/// which must be free.
pub fn restore_name(
    original: &str,
    new_name: Option<&str>,
    taken: impl Fn(&str) -> bool,
    id: u32,
) -> Result<String, Denial> {
    let name = new_name.unwrap_or(original);
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Denial {
            source: Source::Recycle,
            message: format!(
                "recycle bin entry {id} cannot be restored as \"{name}\": a name is 1 to {MAX_NAME} bytes"
            ),
            detail: format!("A database name in PostgreSQL is not empty and at most {MAX_NAME} bytes long."),
            hint: format!(
                "Pass another name: SELECT {};",
                restore_call_with_new_name(id, "<new name>")
            ),
        });
    }
    if taken(name) {
        return Err(Denial {
            source: Source::Recycle,
            message: format!(
                "recycle bin entry {id} cannot be restored as \"{name}\": that name is taken now"
            ),
            detail: format!(
                "The database \"{original}\" was dropped and kept; since then another database took the name \"{name}\"."
            ),
            hint: format!(
                "Restore it under another name: SELECT {};",
                restore_call_with_new_name(id, &format!("{original}_restored"))
            ),
        });
    }
    Ok(name.to_string())
}

/// The refusal of the recycle bin to an agent: it neither reads, restores
/// nor purges it.
pub fn agent_denial(role: &str, what: &str) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!("{what} refused: agent role \"{role}\" may not read, restore or purge the recycle bin"),
        detail: "The recycle bin keeps what agents destroyed; only approvers and superusers decide what comes back or goes for good.".into(),
        hint: "An approver reads SELECT * FROM ai_agent_safety.recycle_bin; and restores with ai_agent_safety.restore_dropped(<id>).".into(),
    }
}

/// The refusal of an agent's TRUNCATE in a REPEATABLE READ or SERIALIZABLE
/// transaction: the recycle bin would copy the rows its snapshot sees, and
/// TRUNCATE removes the rows committed since as well.
pub fn truncate_isolation_denial(role: &str) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!("TRUNCATE refused: agent role \"{role}\" runs it in a REPEATABLE READ or SERIALIZABLE transaction, where the recycle bin could not keep the rows committed since the transaction's snapshot; run it in a READ COMMITTED transaction"),
        detail: "What an agent's TRUNCATE removes is kept in the recycle bin; TRUNCATE removes every row, but a copy made under an older snapshot would miss the rows committed after it.".into(),
        hint: "Run the TRUNCATE in its own statement or in a transaction begun with BEGIN ISOLATION LEVEL READ COMMITTED;".into(),
    }
}

/// The refusal of an agent's TRUNCATE whose table name found another table
/// by the time its rows were kept (a schema renamed meanwhile): the table
/// TRUNCATE would empty is not the one kept.
pub fn truncate_names_changed_denial(role: &str, table: &str) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!("TRUNCATE refused: agent role \"{role}\"'s TRUNCATE named {table}, whose rows were kept, but by the time they were its name found another table; nothing was truncated"),
        detail: "What an agent's TRUNCATE removes is kept in the recycle bin first; a table whose rows were not kept is never emptied.".into(),
        hint: format!("Run the TRUNCATE again, naming the table with its schema: TRUNCATE {table};"),
    }
}

/// The refusal of an agent's INSERT ... ON CONFLICT DO UPDATE into a
/// partitioned table while UPDATE is protected: the partition a row goes
/// to is found row by row, where the recycle bin cannot keep the old
/// version it overwrites.
pub fn upsert_partitioned_denial(role: &str, table: &str) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!("INSERT ... ON CONFLICT DO UPDATE refused: agent role \"{role}\" would overwrite rows of partitioned table {table}, whose old versions the recycle bin cannot keep"),
        detail: "UPDATE is one of ai_agent_safety.protected_operations, so the old version of every row an agent's statement changes is kept; an upsert into a partitioned table finds each row's partition as it runs, out of the bin's reach.".into(),
        hint: format!("Write the change as an UPDATE of {table} and an INSERT ... ON CONFLICT DO NOTHING, which keep what they change."),
    }
}

/// The refusal of a restore of an UPDATE's old rows while a later UPDATE
/// of the same table is kept: restored first, the older versions would be
/// overwritten by the later restore (or lose the later values for good).
pub fn later_update_first(id: i64, later: i64, table: &str) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!("recycle bin entry {id} cannot be restored yet: entry {later} kept a later UPDATE of {table}"),
        detail: "Old versions go back newest first, so that each restore finds the rows as the UPDATE it undoes left them.".into(),
        hint: format!(
            "SELECT {}; then SELECT {};",
            api::call("restore_dropped", &[(&later.to_string(), "bigint")]),
            api::call("restore_dropped", &[(&id.to_string(), "bigint")])
        ),
    }
}

/// The refusal of an entry that does not exist (or is no longer held).
pub fn no_entry(id: i64) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!("recycle bin entry {id} does not exist"),
        detail: "It was restored, purged or expired, or never existed.".into(),
        hint: "The entries are in SELECT * FROM ai_agent_safety.recycle_bin;".into(),
    }
}

pub mod objects;

/// The setting that bounds what the recycle bin keeps of one database.
pub const MAX_BYTES_SETTING: &str = "ai_agent_safety.recycle_max_bytes";

/// Would keeping `adding` more bytes take a database's recycle bin, which
/// holds `kept` now, past its budget (`None`: no limit)?
pub fn over_budget(kept: i64, adding: i64, max: Option<i64>) -> bool {
    max.is_some_and(|m| kept.saturating_add(adding) > m)
}

/// A size as a person reads it: `512 bytes`, `64 kB`, `1.5 GB`.
pub fn size_text(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() < 0.05 || v >= 100.0 {
        format!("{:.0} {}", v, UNITS[unit])
    } else {
        format!("{:.1} {}", v, UNITS[unit])
    }
}

/// What makes the recycle schema unfit to keep anything in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsafeBin {
    /// It belongs to this role, not to the bootstrap superuser.
    Owner(String),
    /// It grants privileges to these roles (quoted; `PUBLIC` for all).
    Grants(Vec<String>),
}

/// The refusal of an agent's statement (`kind`: `truncate`, `delete`,
/// `update`, `drop`) whose destruction would be kept in a schema others
/// reach: nothing is destroyed, and the hint says how a DBA makes the
/// schema safe again.
pub fn unsafe_bin_denial(kind: &str, why: &UnsafeBin) -> Denial {
    let schema = api::RECYCLE_SCHEMA;
    let (whose, hint) = match why {
        UnsafeBin::Owner(owner) => (
            format!("belongs to role \"{owner}\", not to the bootstrap superuser"),
            format!(
                "A DBA checks what the schema holds and drops it: DROP SCHEMA {schema} CASCADE; the next keep makes it again, the bootstrap superuser's."
            ),
        ),
        UnsafeBin::Grants(roles) => {
            let roles = if roles.is_empty() { "PUBLIC".to_string() } else { roles.join(", ") };
            (
                format!("grants privileges to {roles}"),
                format!("A DBA revokes them: REVOKE ALL ON SCHEMA {schema} FROM {roles};"),
            )
        }
    };
    Denial {
        source: Source::Recycle,
        message: format!(
            "{} refused: the recycle bin's schema {schema} {whose}, so what the statement removes cannot be kept where only superusers reach it; nothing was {}",
            kind.to_uppercase(),
            rows_verb_past(kind)
        ),
        detail: "What an agent destroys is kept in that schema for an approver to restore; kept where another role reaches it, the kept rows, or code run on them, would be that role's.".into(),
        hint,
    }
}

/// The refusal of an agent's statement whose kept rows would take the
/// database's recycle bin past `recycle_max_bytes`: its destruction is
/// never made unrecoverable silently.
pub fn budget_denial(
    role: &str,
    statement_kind: &str,
    database: &str,
    kept: i64,
    adding: i64,
    max: i64,
) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!(
            "{statement_kind} refused: agent role \"{role}\" would remove about {} of rows, and keeping them would take the recycle bin of database \"{database}\" past {MAX_BYTES_SETTING} ({}; it holds {} now)",
            size_text(adding),
            size_text(max),
            size_text(kept)
        ),
        detail: "What an agent destroys is kept so that an approver can restore it; past the budget it could not be kept, and an agent's destruction is never made unrecoverable silently.".into(),
        hint: format!(
            "An approver frees room: SELECT id, object, bytes FROM ai_agent_safety.recycle_bin ORDER BY bytes DESC; then SELECT {}; or a DBA raises the budget: ALTER DATABASE {} SET {MAX_BYTES_SETTING} = '{}';",
            api::call("purge_dropped", &[("<id>", "bigint")]),
            api::quote_ident(database),
            size_text((kept.saturating_add(adding)).saturating_mul(2)).replace(' ', "")
        ),
    }
}

/// The refusal of an agent's `ALTER DOMAIN ... ADD CONSTRAINT` or
/// `VALIDATE CONSTRAINT` on a domain that rows the recycle bin keeps are
/// of: PostgreSQL checks every value of the domain, in every table, with
/// the agent's code and without asking for any privilege on the tables,
/// so the check would read the kept rows.
pub fn domain_check_of_kept_denial(role: &str, domain: &str) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!(
            "ALTER DOMAIN refused: agent role \"{role}\" may not add or validate a constraint of domain {domain}: the recycle bin keeps rows of that domain, and the constraint's check would read them"
        ),
        detail: "PostgreSQL checks a new or validated domain constraint against every value of the domain in every table, with the constraint's code, whoever may read those tables; what the recycle bin keeps is for approvers only.".into(),
        hint: "An approver restores or purges the entries that hold the domain's rows first: SELECT id, kind, object FROM ai_agent_safety.recycle_bin ORDER BY id;".into(),
    }
}
