//! Code an agent made stays the agent's.
//!
//! A function, view or rule an agent owns is judged as the agent's whoever
//! runs it. An agent that could leave such code owned by a role that is not
//! an agent would launder it: run by a human, it would go unjudged. So an
//! agent may not give an object to a role that is not an agent (ALTER ...
//! OWNER TO, REASSIGN OWNED), create a function, procedure, aggregate or view
//! while its current role is not an agent (after SET ROLE), or create a rule
//! or a trigger on a table whose owner is not an agent (a rule's actions run
//! as the table's owner; a trigger runs on everyone's writes). Refused in every database; no token covers it.

use crate::audit::Source;
use crate::outcome::Denial;

/// An agent's statement that would leave code or an object with a role that
/// is not an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handover {
    /// How it is spelled: `ALTER FUNCTION ... OWNER TO`, `CREATE VIEW` ...
    pub verb: &'static str,
    /// The role that would own it.
    pub owner: String,
    /// How the owner comes in.
    pub how: HandoverKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoverKind {
    /// ALTER ... OWNER TO, REASSIGN OWNED BY ... TO.
    GivenTo,
    /// Created while the current role (SET ROLE) is the owner.
    CreatedAs,
    /// A rule on a table this role owns.
    RuleOnTableOf,
    /// A trigger on a table this role owns (it runs on that owner's and
    /// everyone's writes, whatever function it calls).
    TriggerOnTableOf,
    /// A foreign key whose action writes (ON DELETE or ON UPDATE CASCADE,
    /// SET NULL, SET DEFAULT) on a table this role owns: PostgreSQL's
    /// trigger in all but name, changing that table's rows whenever the
    /// referenced rows go, and on a Citus worker unseen by the node that
    /// previewed the statement.
    ForeignKeyActionOnTableOf,
    /// A table this role owns made another table's partition or child
    /// (ATTACH PARTITION, INHERIT): its rows are then written through the
    /// parent, and take the parent's foreign keys.
    AttachedTableOf,
}

pub fn handover_denial(session_user: &str, h: &Handover) -> Denial {
    let owner = &h.owner;
    let (what, hint) = match h.how {
        HandoverKind::GivenTo => (
            format!("may not give objects to role \"{owner}\", which is not an agent"),
            "A DBA who has reviewed the object changes its owner, from a role that is not an agent.".to_string(),
        ),
        HandoverKind::CreatedAs => (
            format!("may not create code owned by role \"{owner}\" (its current role), which is not an agent"),
            "Create it as the agent itself: RESET ROLE; then run the statement again.".to_string(),
        ),
        HandoverKind::RuleOnTableOf => (
            format!("may not create a rule on a table owned by role \"{owner}\", which is not an agent"),
            "A rule's actions run as the table's owner; a DBA creates rules on tables agents do not own.".to_string(),
        ),
        HandoverKind::TriggerOnTableOf => (
            format!("may not create a trigger on a table owned by role \"{owner}\", which is not an agent"),
            "A trigger runs on every write to the table, whoever writes, and can drop or change rows silently; a DBA creates triggers on tables agents do not own.".to_string(),
        ),
        HandoverKind::AttachedTableOf => (
            format!("may not make a table owned by role \"{owner}\", which is not an agent, a partition or child of another table"),
            "Its rows would be written through the parent, and take the parent's foreign keys; a DBA attaches tables agents do not own.".to_string(),
        ),
        HandoverKind::ForeignKeyActionOnTableOf => (
            format!("may not add a foreign key that deletes or changes rows (ON DELETE or ON UPDATE CASCADE, SET NULL or SET DEFAULT) to a table owned by role \"{owner}\", which is not an agent"),
            "Add a key that only checks, with no ON DELETE or ON UPDATE action (NO ACTION, the default): ALTER TABLE <schema>.<table> ADD FOREIGN KEY (<columns>) REFERENCES <schema>.<table> (<columns>); a DBA adds keys with actions to tables agents do not own.".to_string(),
        ),
    };
    Denial {
        source: Source::Guard,
        message: format!("{} refused: agent role \"{session_user}\" {what}", h.verb),
        detail: "Code an agent made (functions, views, rules) is judged as the agent's whoever runs it; owned by a role that is not an agent it would run unjudged. Refused in every database, whatever its settings say; no approval token covers it.".into(),
        hint,
    }
}
