//! The extension's SQL API: how people are told to call it, and the names
//! agents may not take.
//!
//! The API lives in schema `ai_agent_safety`, where only the extension
//! creates objects. Everything a refusal, a view or the README tells a
//! person to run is schema-qualified there and passes typed literals
//! ([`call`]), so no function another role made in another schema can take
//! the call: an untyped literal would let an overload such as
//! `public.grant_approval_token(text, text)` win. Agents may not create or
//! rename a function, procedure or aggregate to an API name, or a schema to
//! the extension's, in any schema of any database ([`takes_api_name`]):
//! people who still call the unqualified names are covered too, and an agent
//! cannot pre-create the extension's schema where it is not installed yet.

use crate::audit::Source;
use crate::outcome::Denial;

/// The extension's own schema, which holds its API.
pub const SCHEMA: &str = "ai_agent_safety";

/// The schema that holds the rows the recycle bin keeps (the bootstrap
/// superuser's, made on first use): no one else may make it.
pub const RECYCLE_SCHEMA: &str = "ai_agent_safety_recycle";

/// Every function name of the extension, in any of its schemas. An
/// integration test checks this against the installed extension.
pub const FUNCTION_NAMES: [&str; 46] = [
    "_agent_group",
    "_assert_approver",
    "_audit",
    "_audit_append_only",
    "_audit_events",
    "_audit_log_insert",
    "_audit_stats",
    "_catalog_preview",
    "_check_text",
    "_decide",
    "_max_lifetime",
    "_operation",
    "_preview",
    "_recycle_bin",
    "_recycle_bin_readable",
    "_request_token",
    "_resolve_target",
    "_reviews",
    "_role_environments",
    "_roll_back_prepared",
    "_rows_held",
    "_statement_facts",
    "_statement_form",
    "_statement_reach",
    "_status",
    "_take_preview",
    "_target_facts",
    "_target_text",
    "agent_code_running",
    "approval_token_status",
    "assert_preloaded",
    "audit_log_json",
    "audit_log_since",
    "audit_writer_purging",
    "begin_review",
    "cancel_approval_token",
    "deny_approval_token",
    "grant_approval_token",
    "issue_agent_credentials",
    "library_version",
    "purge_dropped",
    "request_approval_token",
    "restore_dropped",
    "revoke_agent_credentials",
    "role_is_agent",
    "session_is_agent",
];

/// What kind of object a statement names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A function, procedure or aggregate.
    Routine,
    Schema,
}

/// A statement that names an object with an API name: how it is spelled
/// (`CREATE FUNCTION`, `ALTER SCHEMA ... RENAME`), what it names, and the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiName {
    pub verb: &'static str,
    pub kind: NameKind,
    pub name: String,
}

/// Would an object of this kind and name stand where the API is looked
/// for? Names are compared as PostgreSQL stores them (already case-folded).
pub fn takes_api_name(kind: NameKind, name: &str) -> bool {
    match kind {
        NameKind::Routine => FUNCTION_NAMES.contains(&name),
        NameKind::Schema => name == SCHEMA || name == RECYCLE_SCHEMA,
    }
}

/// A typed SQL literal: `'value'::type`, quotes doubled.
pub fn literal(value: &str, sql_type: &str) -> String {
    format!("'{}'::{sql_type}", value.replace('\'', "''"))
}

/// A name as an identifier in SQL: quoted unless it is a plain lower-case
/// name.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A schema-qualified call of an API function with typed arguments, e.g.
/// `ai_agent_safety.grant_approval_token('…'::uuid)`.
pub fn call(function: &str, args: &[(&str, &str)]) -> String {
    call_named(function, args, &[])
}

/// The same with named arguments after the positional ones:
/// `ai_agent_safety.request_approval_token(…, verb => '…'::text)`.
pub fn call_named(function: &str, args: &[(&str, &str)], named: &[(&str, &str, &str)]) -> String {
    let mut all: Vec<String> = args.iter().map(|(v, t)| literal(v, t)).collect();
    all.extend(
        named
            .iter()
            .map(|(n, v, t)| format!("{n} => {}", literal(v, t))),
    );
    format!("{SCHEMA}.{function}({})", all.join(", "))
}

/// The refusal of an agent's statement that would take an API name.
pub fn api_name_denial(session_user: &str, taken: &ApiName) -> Denial {
    let (verb, name) = (taken.verb, &taken.name);
    let (what, why) = match taken.kind {
        NameKind::Routine => (
            format!("a function {name}"),
            format!(
                "A function with the name of one of ai_agent_safety's functions can take the call of a person who runs the name unqualified (a look-alike of {SCHEMA}.grant_approval_token could approve the agent's own requests)."
            ),
        ),
        NameKind::Schema => (
            format!("a schema {name}"),
            "The extension creates its schemas itself (and the recycle bin's), and refuses to use one made by someone else; an agent's schema of that name would keep it out of this database, or hold what the recycle bin keeps where the agent can reach it.".to_string(),
        ),
    };
    Denial {
        source: Source::Guard,
        message: format!(
            "{verb} refused: agent role \"{session_user}\" may not name {what}: it is a name of the ai_agent_safety API"
        ),
        detail: format!(
            "{why} Agents may not take these names in any schema of any database, whatever the database's settings say; no approval token covers it."
        ),
        hint: format!(
            "Choose another name. The extension's API is in schema {SCHEMA}: call it schema-qualified there."
        ),
    }
}
