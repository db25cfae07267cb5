//! The facts a decision is made from, gathered by the glue from GUCs and catalogs.

use crate::operation::{ObjectRef, OpClass, OpSet, Operation};
use uuid::Uuid;

/// Facts about a database: its name and its own ai_agent_safety settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseFacts {
    pub name: String,
    pub require_approval: bool,
    pub protected: OpSet,
    pub environment: Option<String>,
}

/// Facts about the session making the statement.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SessionFacts {
    pub session_user: String,
    pub current_user: String,
    pub is_agent: bool,
    pub task_id: Option<String>,
    pub task_environment: Option<String>,
    /// `None`: no scope set (only unlabelled databases are in scope).
    pub allowed_environments: Option<Vec<String>>,
    /// Set when the statement is an agent's code (a function, trigger, rule
    /// or view it owns) run in the session of another role, this one:
    /// `session_user` is then the agent.
    pub run_by: Option<String>,
    /// The token (if any) came from the setting `ai_agent_safety.approval_token`
    /// rather than from the statement's own comment tag: on a pooled
    /// connection a setting can be another client's leftover.
    pub token_from_setting: bool,
    /// The task of the review this transaction is (`begin_review`), if any.
    pub review: Option<String>,
    /// The statement was sent as it is, at top level, by another node of a
    /// distributed cluster (Citus), over a connection that presented the
    /// cluster's node certificate (`ai_agent_safety.cluster_node_certificate`):
    /// the guard of the node it came from judged the client's statement it
    /// is part of, and approved it if it needed a token.
    pub from_cluster_node: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState {
    Pending,
    Granted,
    Denied,
    Cancelled,
}

impl TokenState {
    pub fn parse(s: &str) -> Option<TokenState> {
        match s {
            "pending" => Some(TokenState::Pending),
            "granted" => Some(TokenState::Granted),
            "denied" => Some(TokenState::Denied),
            "cancelled" => Some(TokenState::Cancelled),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenUse {
    pub at: String,
    pub pid: i32,
}

/// A token row as the glue read it from this database's tokens table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFacts {
    pub id: Uuid,
    pub state: TokenState,
    pub requested_by: String,
    pub decided_by: Option<String>,
    pub operation: OpClass,
    /// `None`: any object in this database.
    pub target: Option<ObjectRef>,
    /// The exact statement verb it was granted for (`CREATE OR REPLACE
    /// VIEW`, `ALTER TABLE ... DROP COLUMN`); `None`: the plain form of its
    /// class only ([`crate::Operation::is_plain`]).
    pub verb: Option<String>,
    pub expires_at_us: Option<i64>,
    pub expires_at_text: String,
    pub used: Option<TokenUse>,
    /// Set when the token was requested for one exact statement.
    pub bound: Option<BoundStatement>,
}

impl TokenFacts {
    /// Does this token approve `op`, the other class of a MERGE it is bound
    /// to? A token bound to a MERGE approves that statement whole: one that
    /// both deletes and updates is approved once (its preview counts both),
    /// whichever of the two was requested; but only a token for DELETE or
    /// UPDATE that the MERGE performs (such a token was previewed and is
    /// capped). Its object and form are checked besides.
    pub fn approves_rest_of_merge<'a>(
        &self,
        op: &Operation,
        mut needing: impl Iterator<Item = &'a Operation>,
    ) -> bool {
        op.class != self.operation
            && self.bound.is_some()
            && op.verb.starts_with("MERGE ")
            && matches!(self.operation, OpClass::Delete | OpClass::Update)
            && needing.any(|o| o.class == self.operation && o.verb.starts_with("MERGE "))
    }
}

/// The statement a token was requested for, and the one it is presented
/// with, each with its form (its parse tree without source positions:
/// whitespace, comments and keyword case do not change it; constants,
/// tables, columns, conditions and bind parameters do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundStatement {
    pub approved: String,
    pub approved_form: String,
    /// Filled by the glue from the statement being judged.
    pub presented: String,
    pub presented_form: Option<String>,
}

/// What the session presented in `ai_agent_safety.approval_token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenPresented {
    None,
    Malformed(String),
    NotFound(Uuid),
    /// The tokens could not be read (extension not created here, internal error).
    Unavailable(String),
    /// The extension's SQL objects here are at a version the library does
    /// not serve.
    NotServed(crate::versions::NotServed),
    Found(TokenFacts),
    /// None was presented, but the agent holds this granted, unused token,
    /// which would have allowed the statement: its SET was lost (a pool).
    /// It never allows anything; it only explains the refusal.
    Held(TokenFacts),
}

/// Parses a token id: a UUID in its canonical text form (hyphens optional,
/// any case, optional braces, surrounding blanks ignored). The URN form and
/// anything else `uuid` would also read are refused: a token id is written
/// the way `request_approval_token` returned it.
pub fn parse_token_id(raw: &str) -> Option<Uuid> {
    let t = raw.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(t);
    if !(t.len() == 32 || t.len() == 36) {
        return None;
    }
    Uuid::try_parse(t).ok()
}
