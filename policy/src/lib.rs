//! The pure decision core of ai_agent_safety.
//!
//! Given facts about a session, a database and the operations a statement
//! performs, [`decide`] returns allow, deny with a reason, or allow with a token.
//! Nothing here touches PostgreSQL; the extension's glue gathers the facts and
//! carries out the decision.

pub mod audit_record;
pub mod credentials;
pub mod decision;
pub mod facts;
pub mod operation;
pub mod time;

pub use credentials::{check_connect_environment, check_login, environment_in_scope, LoginFacts};
pub use decision::{decide, decide_write, needs_approval, token_target_text, Decision, Denial};
pub use facts::{
    parse_token_id, DatabaseFacts, SessionFacts, TokenFacts, TokenPresented, TokenState, TokenUse,
};
pub use operation::{ObjectRef, OpClass, OpSet, Operation};

#[cfg(test)]
mod tests;
