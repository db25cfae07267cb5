//! The way forward an agent is told when it is refused: the exact SQL of its
//! next step. It ends the primary message, short enough to survive clients
//! that show nothing else (several MCP servers drop DETAIL and HINT), and
//! the HINT gives it in full.
//!
//! The token travels with the statement, as a comment tag
//! (`/*ai_agent_safety_token='…'*/`): that works through any pool, pooler
//! mode or protocol, where a `SET` made in an earlier call may have reached
//! another connection.

use crate::api;
use crate::operation::{token_target_text, Operation, Statement};
use crate::outcome::Denial;
use crate::sql_comment::{tag, TOKEN_KEY};

/// Ends a denial's message with its next step, taken from its hint, when
/// the message does not already carry one.
pub fn in_message(d: Denial) -> Denial {
    Denial {
        message: format!("{}; {}", d.message, next_from_hint(&d.hint)),
        ..d
    }
}

/// A hint as the end of a message: first letter lowercased, no final stop.
pub fn next_from_hint(hint: &str) -> String {
    lowercase_first(hint.trim().trim_end_matches('.'))
}

/// How the agent presents a token with its statement.
pub fn present(token: &str) -> String {
    format!("add {} to the statement", tag(TOKEN_KEY, token))
}

/// The call that requests a token for `op`.
pub fn request_call(op: &Operation, task: Option<&str>) -> String {
    let target = token_target_text(op);
    let mut args = vec![
        (op.class.as_str(), "text"),
        (task.unwrap_or("<task id>"), "text"),
    ];
    // An object the call picks when it runs cannot be named: the token is
    // then for any object of this database.
    if !op.object.is_picked_at_run_time() {
        args.push((&target, "text"));
    }
    // A form that is not its class's plain one is approved only by name.
    let named: Vec<(&str, &str, &str)> = if op.is_plain() {
        Vec::new()
    } else {
        vec![("verb", op.verb.as_str(), "text")]
    };
    format!(
        "SELECT {}",
        api::call_named("request_approval_token", &args, &named)
    )
}

/// What a refused statement needs approved.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Asked {
    /// One protected operation: a token for it.
    One,
    /// A MERGE's protected operations (it deletes and updates) on its one
    /// target: a token bound to the statement approves it whole.
    WholeMerge,
    /// Several operations: one statement at a time, each with its token.
    Several,
}

impl Asked {
    /// What the operations that need a token ask for.
    pub fn of<'a>(mut needing: impl Iterator<Item = &'a Operation> + Clone) -> Asked {
        let Some(first) = needing.clone().next() else {
            return Asked::One;
        };
        if needing.clone().count() == 1 {
            Asked::One
        } else if needing
            .all(|o| o.verb.starts_with("MERGE ") && o.object.same_object(&first.object))
        {
            Asked::WholeMerge
        } else {
            Asked::Several
        }
    }
}

/// The call that requests a token bound to the refused statement itself.
fn request_call_bound(op: &Operation, task: Option<&str>) -> String {
    format!(
        "SELECT {}",
        api::call_named(
            "request_approval_token",
            &[
                (op.class.as_str(), "text"),
                (task.unwrap_or("<task id>"), "text"),
            ],
            &[("statement", "<this statement>", "text")]
        )
    )
}

/// The call for statements with several protected operations: one at a time.
fn request_call_one_at_a_time(op: &Operation, task: Option<&str>) -> String {
    format!(
        "SELECT {}",
        api::call(
            "request_approval_token",
            &[
                (op.class.as_str(), "text"),
                (task.unwrap_or("<task id>"), "text"),
                ("<object>", "text"),
            ]
        )
    )
}

/// The short next step for a statement that needs a token: request one,
/// then present it with the statement.
pub fn request_next(op: &Operation, asked: Asked, task: Option<&str>, again: bool) -> String {
    let one = if again { "a new one" } else { "one" };
    match asked {
        Asked::One => format!(
            "request {one} with {}, and once a human grants it {}",
            request_call(op, task),
            present("<token id>")
        ),
        Asked::WholeMerge => format!(
            "request {one} bound to this statement with {}, and once a human grants it {}",
            request_call_bound(op, task),
            present("<token id>")
        ),
        Asked::Several => format!(
            "run the operations one statement at a time, each with its own token: {}",
            request_call_one_at_a_time(op, task)
        ),
    }
}

/// The full HINT for a statement that needs a token.
pub fn request_hint(op: &Operation, asked: Asked, task: Option<&str>) -> String {
    match asked {
        Asked::Several => {
            return format!(
                "Run the operations one statement at a time, each with its own token: {};",
                request_call_one_at_a_time(op, task)
            )
        }
        Asked::WholeMerge => {
            return format!(
                "A MERGE that deletes and updates is approved whole, by one token bound to it: request approval with {}, giving the MERGE exactly as it will run (the approver sees what it would change); once a human has granted it, send the token in the same call as the statement: {}.",
                request_call_bound(op, task),
                present("<token id>")
            )
        }
        Asked::One => {}
    }
    format!(
        "Request approval with {}; once a human has granted it, send the token in the same call as the statement: {} (a SET made in another call may reach another pooled connection). In one session, SET ai_agent_safety.approval_token = '<token id>'; also works.",
        request_call(op, task),
        present("<token id>")
    )
}

pub fn task_sentence(task: Option<&str>) -> String {
    match task {
        Some(t) => format!(" Task: {t}."),
        None => String::new(),
    }
}

/// The sentence with its first letter lowercased, unless its first word is
/// all capitals (an SQL keyword such as COMMIT stays as written).
pub fn lowercase_first(s: &str) -> String {
    let first_word = s.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("");
    if first_word.chars().count() > 1 && first_word.chars().all(|c| !c.is_lowercase()) {
        return s.to_string();
    }
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    }
}

/// The refusal of a token presented inside a read-only transaction: the
/// statement could not write there anyway, and the token stays unused.
pub fn token_in_read_only(stmt: &Statement, token: uuid::Uuid) -> Denial {
    let what = stmt
        .ops
        .first()
        .map_or_else(|| stmt.verb.to_string(), Operation::describe);
    Denial {
        source: crate::Source::Token,
        message: format!(
            "{what} refused: the transaction is read-only, so approval token {token} was not used; run the statement in a read-write transaction, with {}",
            tag(TOKEN_KEY, &token.to_string())
        ),
        detail: "A read-only transaction (BEGIN READ ONLY, SET TRANSACTION READ ONLY, default_transaction_read_only, or a client that runs every call read-only) cannot write; the token is still unused.".into(),
        hint: format!(
            "Send the statement outside a read-only transaction, in one call with its token: <statement> {}",
            tag(TOKEN_KEY, &token.to_string())
        ),
    }
}
