//! Roles and the groups the extension finds people by: an agent changes no
//! role, and nobody renames or drops the two groups while the library is
//! loaded.

use crate::audit::Source;
use crate::facts::{DatabaseFacts, SessionFacts};
use crate::operation::{Operation, Statement};
use crate::outcome::Denial;

/// Roles are cluster-wide: an agent that could create, alter, rename, drop,
/// grant or revoke them could stop being an agent, approve its own tokens or
/// outlive its credentials in every database. So an agent's role changes are
/// refused in every database, whatever its settings say, and no token
/// covers them: a human DBA makes them.
pub(crate) fn role_change_denial(
    session: &SessionFacts,
    here: &DatabaseFacts,
    stmt: &Statement,
) -> Denial {
    let what: Vec<String> = stmt.ops.iter().map(Operation::describe).collect();
    let what = if what.is_empty() {
        "role change".to_string()
    } else {
        what.join(", ")
    };
    Denial {
        source: Source::Guard,
        message: format!(
            "{what} refused: agent role \"{}\" may not create, alter, drop or grant roles",
            session.session_user
        ),
        detail: format!(
            "Roles are cluster-wide, so an agent's role changes are refused in every database, whatever ai_agent_safety.require_approval or ai_agent_safety.mode say in database \"{}\"; no approval token covers them.",
            here.name
        ),
        hint: "Role changes are made by a DBA, from a role that is not an agent.".into(),
    }
}

/// One of the groups the extension finds people by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The group named by `ai_agent_safety.agent_role`: its members are agents.
    Agents,
    /// `ai_agent_approver`: its members may grant and deny tokens.
    Approvers,
}

/// Renaming or dropping the agent group would switch the guard off for every
/// agent in the cluster (nobody would be an agent any more); the approver
/// group's name is how the token functions find approvers. So neither is
/// renamed or dropped while the library is loaded, by anyone: a DBA first
/// points `agent_role` elsewhere. `groups` are the two groups' oids.
pub fn group_change_denial(stmt: &Statement, groups: &[(u32, Group)]) -> Option<Denial> {
    let (op, group) = stmt.ops.iter().find_map(|op| {
        groups
            .iter()
            .find(|(oid, _)| *oid != 0 && op.object.classid == 1260 && op.object.objid == *oid)
            .map(|(_, g)| (op, *g))
    })?;
    let (what, why, hint) = match group {
        Group::Agents => (
            "the agent group (ai_agent_safety.agent_role)",
            "ai_agent_safety finds agents by membership in this group: without it no session would be an agent, and the guard would be off for every agent in the cluster.",
            "To retire the group, first name another one: ALTER SYSTEM SET ai_agent_safety.agent_role = '<new group>'; SELECT pg_catalog.pg_reload_conf();".to_string(),
        ),
        Group::Approvers => (
            "the approver group",
            "The token functions find approvers by membership in ai_agent_approver: without it nobody could grant or deny a token.",
            "It stays while ai_agent_safety is loaded: remove ai_agent_safety from shared_preload_libraries and restart PostgreSQL first.".to_string(),
        ),
    };
    Some(Denial {
        source: Source::Guard,
        message: format!("{} refused: {} is {what}", op.describe(), op.object.display),
        detail: why.to_string(),
        hint,
    })
}
