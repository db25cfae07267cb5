//! The vocabulary: operation classes, sets of them, and the operation a statement performs.

use crate::api::ApiName;
use crate::handover::Handover;
use crate::side_door::SideDoor;
use std::fmt;

/// The class of a destructive operation. The same words appear in settings,
/// tokens, error messages, audit rows and the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpClass {
    Drop,
    Delete,
    Truncate,
    Update,
    Alter,
}

impl OpClass {
    pub const ALL: [OpClass; 5] = [
        OpClass::Drop,
        OpClass::Delete,
        OpClass::Truncate,
        OpClass::Update,
        OpClass::Alter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OpClass::Drop => "DROP",
            OpClass::Delete => "DELETE",
            OpClass::Truncate => "TRUNCATE",
            OpClass::Update => "UPDATE",
            OpClass::Alter => "ALTER",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Parses an operation name as an agent or a DBA writes it: `DROP`, `drop`,
    /// `drop_operation`, `DROP_OPERATION`. Surrounding blanks are ignored.
    pub fn parse(word: &str) -> Option<OpClass> {
        let w = word.trim().to_ascii_uppercase();
        let w = w.strip_suffix("_OPERATION").unwrap_or(&w);
        OpClass::ALL.into_iter().find(|c| c.as_str() == w)
    }

    /// The accepted spellings, for error messages.
    pub fn accepted_names() -> String {
        let plain: Vec<&str> = OpClass::ALL.iter().map(|c| c.as_str()).collect();
        let spelled: Vec<String> = OpClass::ALL
            .iter()
            .map(|c| format!("{}_operation", c.as_str().to_ascii_lowercase()))
            .collect();
        format!("{}, or {}", plain.join(", "), spelled.join(", "))
    }
}

impl fmt::Display for OpClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of operation classes, as configured by `ai_agent_safety.protected_operations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OpSet(u8);

impl OpSet {
    /// Every class: what a statement may perform before it is classified.
    pub const ALL: OpSet = OpSet(0b1_1111);

    pub const fn empty() -> OpSet {
        OpSet(0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Do the two sets share a class?
    pub fn intersects(self, other: OpSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn default_set() -> OpSet {
        OpSet::of(&[OpClass::Drop, OpClass::Delete, OpClass::Truncate])
    }

    pub fn of(classes: &[OpClass]) -> OpSet {
        OpSet(classes.iter().fold(0, |acc, c| acc | c.bit()))
    }

    pub fn contains(self, c: OpClass) -> bool {
        self.0 & c.bit() != 0
    }

    pub fn insert(&mut self, c: OpClass) {
        self.0 |= c.bit();
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn from_bits(bits: u8) -> OpSet {
        OpSet(bits & 0b1_1111)
    }

    /// Parses a comma-separated list such as `DROP, DELETE, TRUNCATE`.
    /// Only the plain class words are accepted here; an empty list protects nothing.
    pub fn parse(list: &str) -> Result<OpSet, String> {
        let mut set = OpSet::empty();
        for raw in list.split(',') {
            let word = raw.trim().trim_matches('"');
            if word.is_empty() {
                if list.trim().is_empty() {
                    continue;
                }
                return Err(format!(
                    "empty entry in \"{list}\"; accepted words are {}",
                    Self::accepted_words()
                ));
            }
            let upper = word.to_ascii_uppercase();
            match OpClass::ALL.into_iter().find(|c| c.as_str() == upper) {
                Some(c) => set.insert(c),
                None => {
                    return Err(format!(
                        "\"{word}\" is not an operation class; accepted words are {}",
                        Self::accepted_words()
                    ))
                }
            }
        }
        Ok(set)
    }

    pub fn accepted_words() -> String {
        let v: Vec<&str> = OpClass::ALL.iter().map(|c| c.as_str()).collect();
        v.join(", ")
    }

    pub fn describe(self) -> String {
        let v: Vec<&str> = OpClass::ALL
            .iter()
            .filter(|c| self.contains(**c))
            .map(|c| c.as_str())
            .collect();
        if v.is_empty() {
            "nothing".into()
        } else {
            v.join(", ")
        }
    }
}

/// A reference to a catalog object: its catalog (classid), its oid, and the
/// identity a person reads (for example `public.orders`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub classid: u32,
    pub objid: u32,
    pub display: String,
}

impl ObjectRef {
    /// An object a function call picks when it runs (`lo_unlink(x)`,
    /// `setval(s, n)`): no catalog and no oid, only what it is.
    pub fn picked_at_run_time(what: &str) -> ObjectRef {
        ObjectRef {
            classid: 0,
            objid: 0,
            display: what.to_string(),
        }
    }

    /// Is it one of those? A token can then name no target for it.
    pub fn is_picked_at_run_time(&self) -> bool {
        self.classid == 0 && self.objid == 0
    }

    pub fn same_object(&self, other: &ObjectRef) -> bool {
        self.objid != 0 && self.classid == other.classid && self.objid == other.objid
    }
}

/// One destructive thing a statement does. A statement may perform several
/// (multi-object DROP, a DELETE in a writable CTE beside an UPDATE, MERGE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub class: OpClass,
    /// What a person calls the statement: `DROP TABLE`, `DELETE`, `ALTER TABLE ... DROP COLUMN`.
    pub verb: String,
    /// The object acted on. `objid` is 0 when the object does not exist (DROP ... IF EXISTS).
    pub object: ObjectRef,
    /// For DROP DATABASE: the database being dropped, whose own settings decide.
    pub target_database: Option<String>,
    /// True when the operation writes data or changes schema (everything but a read).
    pub is_write: bool,
}

/// Catalogs of cluster-wide objects: pg_authid (roles), pg_tablespace, pg_database.
pub const CLUSTER_WIDE_CATALOGS: [u32; 3] = [1260, 1213, 1262];

impl Operation {
    /// Does the operation act on something outside the current database (another
    /// database, a role, a tablespace)? A token for "any object in this database"
    /// never covers such an operation.
    pub fn is_cluster_wide(&self) -> bool {
        self.target_database.is_some() || CLUSTER_WIDE_CATALOGS.contains(&self.object.classid)
    }

    /// Is this the plain form of its class, which a token naming only the
    /// class covers: `DROP <kind>`, `DELETE`, `TRUNCATE`, `UPDATE`? Every
    /// other form (`CREATE OR REPLACE VIEW`, `DROP OWNED BY`, `MERGE ...
    /// THEN DELETE`, any ALTER) is approved only by a token that names it,
    /// so an approver never reads one operation and approves another.
    pub fn is_plain(&self) -> bool {
        match self.class {
            OpClass::Drop => self.verb.starts_with("DROP ") && !self.verb.starts_with("DROP OWNED"),
            OpClass::Delete => self.verb == "DELETE",
            OpClass::Truncate => self.verb == "TRUNCATE",
            OpClass::Update => self.verb == "UPDATE",
            OpClass::Alter => false,
        }
    }

    /// The text used in messages: `DROP TABLE public.orders`, `DELETE on public.orders`.
    /// A verb with `...` (`ALTER TABLE ... DROP COLUMN note`) takes the
    /// object in its place: `ALTER TABLE public.orders DROP COLUMN note`.
    pub fn describe(&self) -> String {
        match self.class {
            OpClass::Delete | OpClass::Update => {
                format!("{} on {}", self.verb, self.object.display)
            }
            _ if self.verb.contains(" ... ") => {
                self.verb
                    .replacen(" ... ", &format!(" {} ", self.object.display), 1)
            }
            _ => format!("{} {}", self.verb, self.object.display),
        }
    }
}

/// What one statement does, as far as the policy cares: its destructive
/// operations, and whether it writes at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statement {
    pub ops: Vec<Operation>,
    /// A write or DDL, destructive or not (INSERT, CREATE ... as well).
    pub writes: bool,
    /// The statement's verb for messages about writes that destroy nothing
    /// (`INSERT`, `DDL`), and `SELECT` for reads.
    pub verb: &'static str,
    /// It creates, alters, renames, drops, grants or revokes a role: a change
    /// to the cluster-wide role graph (its operations name the roles).
    pub changes_roles: bool,
    /// The guard's own settings it changes for others (ALTER SYSTEM, ALTER
    /// DATABASE ... SET), by name; `ALL` for a RESET ALL.
    pub changes_settings: Vec<String>,
    /// A name of the extension's API it would give a function, procedure,
    /// aggregate or schema (CREATE, or RENAME TO).
    pub takes_api_name: Option<ApiName>,
    /// Code or an object it would leave with a role that is not an agent.
    pub hands_over: Option<Handover>,
    /// A door out of the database it opens (`COPY ... PROGRAM`, `COPY ...
    /// 'file'`), by how it is spelled.
    pub side_door: Option<(&'static str, SideDoor)>,
    /// Other nodes of a distributed cluster carry out part of it (a Citus
    /// distributed plan), in sessions of the current role. The glue says
    /// so only while the statement runs as a role other than the session's
    /// agent (`SET ROLE`, `SECURITY DEFINER`, an agent's code in another
    /// role's session): the one case a rule reads it, so an agent's own
    /// distributed reads are not decided for it.
    pub reaches_other_nodes: bool,
}

impl Statement {
    /// A read: destroys and writes nothing.
    pub fn read() -> Statement {
        Statement {
            verb: "SELECT",
            ..Default::default()
        }
    }

    /// Does it change what the guard itself stands on: the cluster-wide
    /// role graph, the guard's settings for others, the names of its API,
    /// or who owns an agent's code? Or does it open a door out of the
    /// database? Such a statement is decided in every database, whatever its
    /// settings say, never relaxed by shadow mode, and no token covers it.
    pub fn touches_guard(&self) -> bool {
        self.changes_roles
            || !self.changes_settings.is_empty()
            || self.takes_api_name.is_some()
            || self.hands_over.is_some()
            || self.side_door.is_some()
            || self.reaches_other_nodes
    }

    /// The classes its operations perform.
    pub fn classes(&self) -> OpSet {
        let mut set = OpSet::empty();
        for op in &self.ops {
            set.insert(op.class);
        }
        set
    }

    /// Does it act on another database (DROP DATABASE)?
    pub fn targets_other_database(&self) -> bool {
        self.ops.iter().any(|o| o.target_database.is_some())
    }

    /// The operation classes, for the audit log's `operation` column:
    /// `DELETE`, `DROP, DELETE`, or the verb when it destroys nothing.
    pub fn operation_text(&self) -> String {
        if self.ops.is_empty() {
            return self.verb.to_string();
        }
        let mut v: Vec<&str> = self.ops.iter().map(|o| o.class.as_str()).collect();
        v.dedup();
        v.join(", ")
    }

    /// The objects acted on, for the audit log's `object` column.
    /// What the statement does, for a message: its first operation
    /// (`DELETE on public.orders`), or its verb.
    pub fn what(&self) -> String {
        self.ops
            .first()
            .map_or_else(|| self.verb.to_string(), Operation::describe)
    }

    pub fn object_text(&self) -> String {
        let v: Vec<String> = self.ops.iter().map(token_target_text).collect();
        v.join(", ")
    }
}

/// How request_approval_token's `target` names the operation's object.
pub fn token_target_text(op: &Operation) -> String {
    match (&op.target_database, op.class) {
        (Some(db), _) => format!("DATABASE {db}"),
        _ if op.verb.starts_with("DROP SCHEMA") => format!("SCHEMA {}", op.object.display),
        _ if op.verb.starts_with("DROP OWNED BY") => format!("OWNED BY {}", op.object.display),
        _ => op.object.display.clone(),
    }
}
