//! The pure decision core of ai_agent_safety.
//!
//! Given facts about a session, a database and what a statement does,
//! [`treatment`] says whether the statement needs a closer look, and
//! [`decide_statement`] returns allow, deny with a reason, or allow with a
//! token. Nothing here touches PostgreSQL; the extension's glue gathers the
//! facts and carries out the decision.
//!
//! Modules, each knowing only those listed after it:
//! - `treatment`: the one answer to "what must happen to this statement?";
//! - `decision`: approval and token rules (`decide`, `decide_statement`);
//! - `environment`: environment scope and task-environment rules;
//! - `credentials`: login rules for agent roles;
//! - `guard_settings`: which settings are not an agent's to change;
//! - `handover`: code an agent made stays the agent's;
//! - `review`: reviewed transactions: what they cover, who finishes them;
//! - `row_cap`: how many rows a token lets its statement change;
//! - `outcome`: `Decision` and `Denial`;
//! - `side_door`: programs and server files, never from an agent's statement;
//! - `way_forward`: the next step a refusal tells an agent;
//! - `sql_comment`: tags a statement carries in its comments (token, task);
//! - `statement_form`: what a token bound to a statement compares;
//! - `sql_lexer`: where quotes, dollar quotes and comments end;
//! - `facts`: what the rules are decided from;
//! - `api`: the SQL API's schema, names and how people are told to call it;
//! - `operation`: operation classes, operations, statements;
//! - `audit`: the audit vocabulary and the one definition of a record;
//! - `time`: PostgreSQL timestamps as text.

pub mod api;
pub mod audit;
pub mod credentials;
pub mod decision;
pub mod environment;
pub mod facts;
pub mod guard_settings;
pub mod handover;
pub mod operation;
pub mod outcome;
pub mod recycle;
pub mod review;
pub mod roles;
pub mod row_cap;
pub mod side_door;
pub mod sql_comment;
pub mod sql_lexer;
pub mod statement_form;
pub mod time;
pub mod treatment;
pub mod unplanned_writes;
pub mod versions;
pub mod way_forward;

pub use api::{takes_api_name, ApiName, NameKind};
pub use audit::{AuditDestination, AuditLevel, EventKind, Mode, Source, Verdict, WriterState};
pub use credentials::{check_login, check_session, login_hint, HeldPrivilege, LoginFacts};
pub use decision::{after_lost_race, decide, decide_statement, needs_approval, token_can_matter};
pub use environment::{check_connect_environment, decide_write, environment_in_scope};
pub use facts::{
    parse_token_id, BoundStatement, DatabaseFacts, SessionFacts, TokenFacts, TokenPresented,
    TokenState, TokenUse,
};
pub use guard_settings::{is_guard_setting, settings_change_denial};
pub use handover::{Handover, HandoverKind};
pub use operation::{token_target_text, ObjectRef, OpClass, OpSet, Operation, Statement};
pub use outcome::{Decision, Denial};
pub use roles::{group_change_denial, Group};
pub use side_door::SideDoor;
pub use treatment::{treatment, Shape, SwitchSource, Switches, Treatment};

#[cfg(test)]
mod tests;
