//! What an agent's statement presents: its approval token and task id, from
//! the statement's own comment tags (`/*ai_agent_safety_token='…'*/`, read by
//! `aas_policy::sql_comment`) or else from the settings.
//!
//! A token presented by a session-level `SET` is cleared once it is used, at
//! the commit of the statement's transaction, so a pooled connection never
//! carries a spent token to its next client. The clearing is part of the
//! transaction: if it rolls back, the token is unused and the setting stays.

use crate::settings;
use aas_policy::sql_comment::{self, TASK_KEY, TOKEN_KEY};
use pgrx::pg_sys;

/// The token and task a statement presents.
pub struct Presented {
    /// The raw token text: `Err` when the statement's tag is malformed.
    pub token: Option<Result<String, String>>,
    /// The token came from the setting, not from the statement's text.
    pub token_from_setting: bool,
    pub task: Option<String>,
}

/// A tag of the statement; a cheap test first, as most statements carry
/// no tag at all.
fn tag(statement: &str, key: &str) -> Option<Result<String, String>> {
    if !statement.contains(key) {
        return None;
    }
    let found = sql_comment::value(statement, key).transpose()?;
    // PostgreSQL gives the text of the running statement, except for a
    // rule's action or EXPLAIN's inner statement, which get the whole query
    // string: a tag there may belong to another statement of the string.
    if !crate::statement_form::is_one_statement(statement) {
        return Some(Err(format!(
            "the {key} tag is in a query string of several statements, and the statement running is not told apart from the others; send the statement alone, with its tag"
        )));
    }
    Some(found)
}

/// The task a statement names in its tag, or else the session's setting.
/// A statement of an agent's code running in another role's session names
/// nothing: the agent may not write the task of someone else's events.
pub fn task_of(statement: &str) -> Option<String> {
    let others_session_runs_agent_code =
        crate::agent_code::running().is_some() && !crate::identity::session_user_is_agent();
    match tag(statement, TASK_KEY) {
        Some(Ok(t)) if !others_session_runs_agent_code => Some(t),
        _ => settings::task_id().map(str::to_string),
    }
}

/// Reads the statement's tags, falling back to the settings.
pub fn of(statement: &str) -> Presented {
    let tag = |key| tag(statement, key);
    let (token, token_from_setting) = match tag(TOKEN_KEY) {
        Some(t) => (Some(t), false),
        None => match settings::approval_token() {
            Some(s) => (Some(Ok(s.to_string())), true),
            None => (None, false),
        },
    };
    Presented {
        token,
        token_from_setting,
        task: task_of(statement),
    }
}

/// The token the setting presented and this transaction used: cleared at
/// its commit.
// SAFETY: a backend is single-threaded; set by the guard, taken by the
// transaction callback.
static mut SPENT: Option<(String, pg_sys::SubTransactionId)> = None;
static mut REGISTERED: bool = false;

/// Remembers that the setting's token was used by this transaction (in the
/// current subtransaction: if that one rolls back, the token was not used).
pub fn spent_from_setting(token: &str) {
    // SAFETY: see SPENT; the callbacks are registered once per backend, by
    // an agent's statement only.
    unsafe {
        if !REGISTERED {
            pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
            REGISTERED = true;
        }
        *std::ptr::addr_of_mut!(SPENT) = Some((
            token.to_string(),
            crate::unguarded::GetCurrentSubTransactionId(),
        ));
    }
}

/// A subtransaction that rolls back takes the use of the token with it
/// (the token's row is unused again), so the setting stays.
// SAFETY: registered with RegisterSubXactCallback; it only reads and
// clears SPENT.
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event != pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        return;
    }
    // SAFETY: see SPENT.
    let spent = unsafe { &mut *std::ptr::addr_of_mut!(SPENT) };
    // Subtransaction ids grow: the one that used it is this one or inside it.
    if spent.as_ref().is_some_and(|(_, used_in)| *used_in >= sub) {
        *spent = None;
    }
}

#[pgrx::pg_guard]
// SAFETY: registered with RegisterXactCallback; at PRE_COMMIT the
// transaction is valid, so a setting can be changed within it.
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    // SAFETY: see SPENT.
    let spent = unsafe { &mut *std::ptr::addr_of_mut!(SPENT) };
    match event {
        XACT_EVENT_PRE_COMMIT => {
            let Some((token, _)) = spent.take() else {
                return;
            };
            // Only if the setting still holds it (not changed since).
            if settings::approval_token() != Some(token.as_str()) {
                return;
            }
            // SAFETY: a session-level assignment of a user setting inside
            // the committing transaction, as SET would make it.
            unsafe {
                crate::pg::set_setting(
                    c"ai_agent_safety.approval_token",
                    c"",
                    pg_sys::GucAction::GUC_ACTION_SET,
                );
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE => *spent = None,
        _ => {}
    }
}
