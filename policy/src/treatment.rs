//! The one answer to "what must happen to this statement?".
//!
//! Every hook asks [`treatment`] with the settings in force and what it
//! knows of the statement, and does what the answer says: hand the statement
//! on untouched, only record it in the audit log, or gather the facts and
//! [`crate::decide_statement`] it. Nothing else in the extension decides
//! whether a statement deserves a closer look, so a rule cannot be skipped by
//! a shortcut elsewhere.

use crate::audit::{AuditLevel, EventKind, Mode, Verdict};
use crate::operation::{OpSet, Statement};

/// The settings in force for this session in this database that bear on
/// how a statement is treated (read by the glue from its ai_agent_safety.*
/// settings, per statement: they can change at any time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switches<'a> {
    pub require_approval: bool,
    pub protected: OpSet,
    pub audit_level: AuditLevel,
    pub mode: Mode,
    /// This database's environment label.
    pub environment: Option<&'a str>,
    /// The environment the agent's task declared.
    pub task_environment: Option<&'a str>,
}

impl Switches<'_> {
    /// Could the task-environment rule refuse a write here? Only when a task
    /// environment is declared and differs from this database's label.
    pub fn task_environment_mismatch(&self) -> bool {
        matches!(self.task_environment, Some(t) if self.environment != Some(t))
    }
}

/// Where [`treatment`] reads the settings from. [`Switches`] holds them as
/// values; the extension reads each live setting only when the answer needs
/// it (an agent's read-only query reads one: the audit level).
pub trait SwitchSource {
    fn require_approval(&self) -> bool;
    fn protected(&self) -> OpSet;
    fn audit_level(&self) -> AuditLevel;
    fn task_environment_mismatch(&self) -> bool;
}

impl SwitchSource for Switches<'_> {
    fn require_approval(&self) -> bool {
        self.require_approval
    }
    fn protected(&self) -> OpSet {
        self.protected
    }
    fn audit_level(&self) -> AuditLevel {
        self.audit_level
    }
    fn task_environment_mismatch(&self) -> bool {
        Switches::task_environment_mismatch(self)
    }
}

/// What the hooks know of a statement before (or after) classifying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// It writes or changes schema (anything but a read).
    pub writes: bool,
    /// The destructive classes it performs; [`OpSet::ALL`] while unknown.
    pub classes: OpSet,
    /// It acts on another database (DROP DATABASE), whose own settings
    /// decide: always decided, whatever this database's settings say.
    pub other_database: bool,
    /// It changes what the guard stands on ([`Statement::touches_guard`]):
    /// always decided, whatever this database's settings say.
    pub touches_guard: bool,
}

impl Shape {
    /// A query that changes nothing.
    pub const READ: Shape = Shape {
        writes: false,
        classes: OpSet::empty(),
        other_database: false,
        touches_guard: false,
    };

    /// A utility statement not yet classified: it may do anything. What its
    /// node tag alone tells: does it drop a database, or touch the guard?
    pub fn unclassified_utility(drops_database: bool, touches_guard: bool) -> Shape {
        Shape {
            writes: true,
            classes: OpSet::ALL,
            other_database: drops_database,
            touches_guard,
        }
    }

    /// The shape of a classified statement.
    pub fn of(stmt: &Statement) -> Shape {
        Shape {
            writes: stmt.writes || !stmt.ops.is_empty(),
            classes: stmt.classes(),
            other_database: stmt.targets_other_database(),
            touches_guard: stmt.touches_guard(),
        }
    }
}

/// What must happen to a statement of an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treatment {
    /// Nothing can refuse or record it: hand it on.
    Pass,
    /// Nothing can refuse it, but the audit level records it as allowed.
    Record,
    /// A rule may refuse it: gather the facts and decide.
    Decide,
}

/// The one rule place for "does this statement need a closer look?".
/// Settings are read in the order that asks least of a read-only query.
pub fn treatment(sw: &impl SwitchSource, shape: Shape) -> Treatment {
    let may_refuse = shape.other_database
        || shape.touches_guard
        || (!shape.classes.is_empty()
            && sw.require_approval()
            && shape.classes.intersects(sw.protected()))
        || (shape.writes && sw.task_environment_mismatch());
    if may_refuse {
        Treatment::Decide
    } else if sw.audit_level().records_allowed(shape.writes) {
        Treatment::Record
    } else {
        Treatment::Pass
    }
}

impl Mode {
    /// The mode a statement is judged in. A database's shadow mode never
    /// relaxes a rule about the cluster-wide role graph: that rule is not
    /// this database's to switch off.
    pub fn for_statement(self, stmt: &Statement) -> Mode {
        if stmt.touches_guard() {
            Mode::Enforce
        } else {
            self
        }
    }

    /// Does a refusal stop the statement (enforce), or only get recorded as
    /// what would have been refused (audit, shadow mode)?
    pub fn stops(self) -> bool {
        self == Mode::Enforce
    }

    /// How a refusal is recorded in this mode.
    pub fn refusal(self) -> (EventKind, Verdict) {
        match self {
            Mode::Enforce => (EventKind::Refused, Verdict::Refuse),
            Mode::Audit => (EventKind::WouldRefuse, Verdict::WouldRefuse),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::OpClass;

    fn switches() -> Switches<'static> {
        Switches {
            require_approval: false,
            protected: OpSet::default_set(),
            audit_level: AuditLevel::Decisions,
            mode: Mode::Enforce,
            environment: None,
            task_environment: None,
        }
    }

    fn write(classes: &[OpClass]) -> Shape {
        Shape {
            writes: true,
            classes: OpSet::of(classes),
            other_database: false,
            touches_guard: false,
        }
    }

    #[test]
    fn nothing_configured_passes_everything_but_drop_database() {
        let sw = switches();
        assert_eq!(treatment(&sw, Shape::READ), Treatment::Pass);
        assert_eq!(treatment(&sw, write(&[OpClass::Delete])), Treatment::Pass);
        assert_eq!(
            treatment(&sw, Shape::unclassified_utility(false, false)),
            Treatment::Pass
        );
        assert_eq!(
            treatment(&sw, Shape::unclassified_utility(true, false)),
            Treatment::Decide
        );
    }

    #[test]
    fn protected_classes_are_decided_others_pass() {
        let sw = Switches {
            require_approval: true,
            ..switches()
        };
        assert_eq!(treatment(&sw, write(&[OpClass::Delete])), Treatment::Decide);
        assert_eq!(treatment(&sw, write(&[OpClass::Update])), Treatment::Pass);
        assert_eq!(treatment(&sw, write(&[])), Treatment::Pass);
        assert_eq!(treatment(&sw, Shape::READ), Treatment::Pass);
        assert_eq!(
            treatment(&sw, Shape::unclassified_utility(false, false)),
            Treatment::Decide
        );
        let none = Switches {
            protected: OpSet::empty(),
            ..sw
        };
        assert_eq!(
            treatment(&none, Shape::unclassified_utility(false, false)),
            Treatment::Pass
        );
    }

    #[test]
    fn a_task_environment_elsewhere_decides_every_write() {
        let sw = Switches {
            environment: Some("production"),
            task_environment: Some("development"),
            ..switches()
        };
        assert!(sw.task_environment_mismatch());
        assert_eq!(treatment(&sw, write(&[])), Treatment::Decide);
        assert_eq!(treatment(&sw, Shape::READ), Treatment::Pass);
        let here = Switches {
            environment: Some("development"),
            ..sw
        };
        assert!(!here.task_environment_mismatch());
        assert_eq!(treatment(&here, write(&[])), Treatment::Pass);
        let unlabelled = Switches {
            environment: None,
            ..sw
        };
        assert_eq!(treatment(&unlabelled, write(&[])), Treatment::Decide);
    }

    #[test]
    fn audit_levels_record_what_they_name() {
        let writes = Switches {
            audit_level: AuditLevel::Writes,
            ..switches()
        };
        assert_eq!(treatment(&writes, write(&[])), Treatment::Record);
        assert_eq!(treatment(&writes, Shape::READ), Treatment::Pass);
        let all = Switches {
            audit_level: AuditLevel::All,
            ..switches()
        };
        assert_eq!(treatment(&all, Shape::READ), Treatment::Record);
        // A rule that may refuse wins over recording.
        let both = Switches {
            require_approval: true,
            ..all
        };
        assert_eq!(treatment(&both, write(&[OpClass::Drop])), Treatment::Decide);
    }

    #[test]
    fn shape_of_a_classified_statement() {
        assert_eq!(Shape::of(&Statement::read()), Shape::READ);
        let insert = Statement {
            writes: true,
            verb: "INSERT",
            ..Default::default()
        };
        assert_eq!(Shape::of(&insert), write(&[]));
    }

    #[test]
    fn role_changes_are_decided_everywhere_and_enforced_in_shadow_mode() {
        // Nothing configured in this database: still decided.
        let sw = switches();
        assert_eq!(
            treatment(&sw, Shape::unclassified_utility(false, true)),
            Treatment::Decide
        );
        let grant = Statement {
            writes: true,
            verb: "DDL",
            changes_roles: true,
            ..Default::default()
        };
        assert_eq!(treatment(&sw, Shape::of(&grant)), Treatment::Decide);
        assert_eq!(Mode::Audit.for_statement(&grant), Mode::Enforce);
        assert_eq!(Mode::Audit.for_statement(&Statement::read()), Mode::Audit);
    }

    #[test]
    fn modes() {
        assert!(Mode::Enforce.stops() && !Mode::Audit.stops());
        assert_eq!(
            Mode::Audit.refusal(),
            (EventKind::WouldRefuse, Verdict::WouldRefuse)
        );
    }
}
