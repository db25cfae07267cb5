//! An agent's DROP TABLE, DROP VIEW, DROP MATERIALIZED VIEW, DROP SEQUENCE
//! or DROP SCHEMA, kept: PostgreSQL's own dependency walk says what the
//! DROP would remove (run and rolled back); this decides, object by
//! object, what becomes of each. Relations are moved into the recycle
//! schema (a dropped schema is renamed instead), their pieces follow them,
//! links between what is kept and what stays are cut and remembered (a
//! restore makes them again), and anything else refuses the DROP: an
//! agent's destruction is never made unrecoverable silently.

use crate::api;
use crate::audit::Source;
use crate::outcome::Denial;

/// The DROP forms the recycle bin keeps, by PostgreSQL's object type
/// word, and the entry kind each is listed as.
pub fn kept_kind(drop_of: &str) -> Option<&'static str> {
    Some(match drop_of {
        "table" => "table",
        "view" => "view",
        "materialized view" => "materialized view",
        "sequence" => "sequence",
        "schema" => "schema",
        _ => return None,
    })
}

/// What kind of object the dependency walk found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    /// A pg_class row, by relkind.
    Relation(char),
    /// One column of a relation (a sub-object).
    Column,
    /// A constraint; `references` is a foreign key's referenced table.
    Constraint {
        references: Option<u32>,
    },
    /// A trigger PostgreSQL made for a constraint: it goes with it.
    ConstraintTrigger,
    Default,
    Trigger,
    Policy,
    Rule,
    Type,
    Function,
    Schema,
    /// Extended statistics on a relation.
    Statistics,
    Other,
}

/// One object the DROP would remove.
#[derive(Clone, Debug)]
pub struct Dropped {
    pub oid: u32,
    pub class: Class,
    /// PostgreSQL's description of it (`pg_describe_object`), for messages.
    pub what: String,
    /// The schema it lives in, if it lives in one.
    pub schema: Option<u32>,
    /// The relation it belongs to: an index's or a constraint's table, a
    /// toast table's owner, a row type's relation, a column's table.
    pub relation: Option<u32>,
    pub temporary: bool,
}

/// What becomes of one dropped object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// A relation moved into the recycle schema (renamed, owned by the
    /// bootstrap superuser, out of every agent's reach).
    Move,
    /// Goes with what is kept: its relation's move, or the schema's rename.
    Follows,
    /// A piece of something that stays, or a link from what is kept to
    /// what stays: removed now, as the DROP would, and remade by a restore.
    Cut,
    /// Cannot be kept: the DROP is refused.
    Refuse,
}

/// Relation kinds moved as a whole (tables, partitioned tables, views,
/// materialized views, sequences, foreign tables).
fn movable(relkind: char) -> bool {
    matches!(relkind, 'r' | 'p' | 'v' | 'm' | 'S' | 'f')
}

/// The fate of each dropped object, in order. `schema` is the dropped
/// schema, for DROP SCHEMA.
pub fn plan(dropped: &[Dropped], schema: Option<u32>) -> Vec<Fate> {
    let in_schema = |d: &Dropped| schema.is_some() && d.schema == schema;
    let moved: Vec<u32> = dropped
        .iter()
        .filter(|d| matches!(d.class, Class::Relation(k) if movable(k)) && !in_schema(d))
        .map(|d| d.oid)
        .collect();
    let kept_base = |r: u32| {
        moved.contains(&r)
            || dropped
                .iter()
                .any(|d| d.oid == r && matches!(d.class, Class::Relation(_)) && in_schema(d))
    };
    // A kept relation's toast table is kept with it (and its index).
    let toast: Vec<u32> = dropped
        .iter()
        .filter(|d| d.class == Class::Relation('t') && d.relation.is_some_and(kept_base))
        .map(|d| d.oid)
        .collect();
    // Kept: a moved relation, anything in the renamed schema, their toast.
    let kept_rel = |rel: Option<u32>| rel.is_some_and(|r| kept_base(r) || toast.contains(&r));
    dropped
        .iter()
        .map(|d| match &d.class {
            Class::Schema if schema == Some(d.oid) => Fate::Follows,
            _ if in_schema(d) => match &d.class {
                // A foreign key from the kept schema to a table that stays.
                Class::Constraint {
                    references: Some(r),
                } if !kept_rel(Some(*r)) => Fate::Cut,
                _ => Fate::Follows,
            },
            Class::Relation(k) if movable(*k) => {
                if d.temporary {
                    Fate::Refuse
                } else {
                    Fate::Move
                }
            }
            // Indexes, toast tables, statistics: with their relation. An
            // index of a table that stays (on a dropped function) is cut.
            Class::Relation('i' | 'I') => {
                if kept_rel(d.relation) {
                    Fate::Follows
                } else {
                    Fate::Cut
                }
            }
            Class::Relation('t')
            | Class::Statistics
            | Class::Rule
            | Class::Column
            | Class::Type => {
                if kept_rel(d.relation) {
                    Fate::Follows
                } else {
                    Fate::Refuse
                }
            }
            Class::ConstraintTrigger => Fate::Follows,
            Class::Constraint { references } => {
                let ours = kept_rel(d.relation);
                let to_kept = references.is_none_or(|r| kept_rel(Some(r)));
                if d.relation.is_none() {
                    // A domain's constraint outside the dropped schema.
                    Fate::Refuse
                } else if ours && to_kept {
                    Fate::Follows
                } else {
                    Fate::Cut
                }
            }
            Class::Default | Class::Trigger | Class::Policy => {
                if kept_rel(d.relation) {
                    Fate::Follows
                } else {
                    Fate::Cut
                }
            }
            _ => Fate::Refuse,
        })
        .collect()
}

/// The NOTICE the agent sees: the DROP succeeded, and where it went.
pub fn kept_objects_notice(
    kind: &str,
    object: &str,
    id: u32,
    kept_as: &str,
    retention_s: i64,
) -> String {
    format!(
        "{kind} {object} was moved to the recycle bin as entry {id} ({kept_as}) for {}; its name is free; an approver can restore it with SELECT {}",
        super::duration_text(retention_s),
        api::call("restore_dropped", &[(&id.to_string(), "bigint")])
    )
}

/// The refusal of a DROP whose dependency walk reaches something the
/// recycle bin cannot keep.
pub fn unkeepable_denial(role: &str, statement_kind: &str, what: &[String]) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!(
            "DROP {} refused: agent role \"{role}\" would also remove {}, which the recycle bin cannot keep; nothing was dropped",
            statement_kind.to_uppercase(),
            what.join(", ")
        ),
        detail: "What an agent drops is kept in the recycle bin so that an approver can restore it; these objects could not be kept whole (a temporary table, a column of a table that stays, or an object outside what is dropped that depends on it).".into(),
        hint: format!(
            "Have their owner or a DBA remove {} first, then run the DROP again; or ask a DBA to run the DROP (a DBA's DROP is not kept).",
            what.join(", ")
        ),
    }
}

/// The refusal of a restore whose original place is gone.
pub fn schema_gone(id: u32, object: &str, schema: &str) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!(
            "recycle bin entry {id} cannot be restored: {object} was in schema \"{schema}\", which does not exist now"
        ),
        detail: "A kept relation goes back to the schema it was dropped from.".into(),
        hint: format!(
            "Create the schema first: CREATE SCHEMA {}; then SELECT {};",
            api::quote_ident(schema),
            api::call("restore_dropped", &[(&id.to_string(), "bigint")])
        ),
    }
}

/// The name a kept relation takes in the recycle schema:
/// `d<entry>_<n>_<original>`, cut at a character boundary to 63 bytes
/// (unique: entry ids are never handed out twice, `n` numbers the entry's
/// relations).
pub fn kept_relation_name(original: &str, id: u32, n: usize) -> String {
    super::cut(format!("d{id}_{n}_"), original)
}

/// The name a restored index or sequence takes when its own was taken
/// since: `<original>_r<entry>`, cut to 63 bytes.
pub fn suffixed_name(original: &str, id: u32) -> String {
    let suffix = format!("_r{id}");
    let mut name = super::cut(String::new(), original);
    while name.len() + suffix.len() > 63 {
        name.pop();
    }
    name + &suffix
}

/// The refusal of a restore whose name is taken now.
pub fn name_taken(id: u32, kind: &str, name: &str) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!(
            "recycle bin entry {id} cannot be restored as {kind} {name}: that name is taken now"
        ),
        detail: format!("Since the DROP, another {kind} took the name {name}."),
        hint: format!(
            "Restore it under another name: SELECT {};",
            super::restore_call_with_new_name(id, "<new name>")
        ),
    }
}

/// The refusal of `new_name` for an entry whose cut links name its
/// objects by their original names (remade elsewhere, they would bind to
/// whatever holds that name now).
pub fn new_name_with_links(id: u32, object: &str, links: &[String]) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!(
            "recycle bin entry {id} cannot be restored under another name: it had links to objects that stayed ({}), which name {object} by its original name",
            links.join(", ")
        ),
        detail: "A restore makes those links again as they were; under another name they would bind to whatever holds the original name now.".into(),
        hint: format!(
            "Rename what holds the name now, then restore under the original name: ALTER ... RENAME TO <other name>; SELECT {};",
            api::call("restore_dropped", &[(&id.to_string(), "bigint")])
        ),
    }
}

/// Is a schema, by name, one that holds what the bin keeps: the recycle
/// schema, or a kept schema (renamed `recycled_<entry>_<name>`)? A schema
/// someone else named so is treated alike: agents may not change what is
/// in it.
pub fn is_kept_schema(name: &str) -> bool {
    name == api::RECYCLE_SCHEMA
        || name.strip_prefix("recycled_").is_some_and(|rest| {
            rest.split_once('_')
                .is_some_and(|(id, _)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The refusal of an agent's statement that would drop or change an object
/// the recycle bin holds (an ALTER ... CASCADE reaching a kept view, an
/// ALTER TYPE rewriting a kept table).
pub fn held_denial(role: &str, schema: &str) -> Denial {
    Denial {
        source: Source::Recycle,
        message: format!(
            "statement refused: agent role \"{role}\" would drop or change an object in schema {schema}, which the recycle bin holds"
        ),
        detail: "What the recycle bin keeps stays as it was dropped until an approver restores or purges it, or it expires.".into(),
        hint: "Leave out what reaches it (a CASCADE, a change of a type a kept table uses); an approver reads SELECT * FROM ai_agent_safety.recycle_bin;".into(),
    }
}
