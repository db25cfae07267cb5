//! Every `ai_agent_safety.*` setting: who it is for, its context, default,
//! parsing and validation, and typed accessors. Nothing outside this module
//! reads a setting's storage.
//!
//! Configuration lives in PostgreSQL's own settings, so it can be set per
//! database (`ALTER DATABASE ... SET`), per role, or in postgresql.conf.
//! Settings that restrict agents are superuser-only (PGC_SUSET), so an agent
//! cannot change them with SET, set_config, ALTER ROLE or ALTER DATABASE.
//!
//! Check hooks only validate (PostgreSQL also calls them for values it never
//! assigns: ALTER SYSTEM, pg_file_settings); assign hooks store what is
//! derived from a value.

mod derived;
mod not_agents;

use aas_policy::{AuditDestination, AuditLevel, Mode, OpSet, SwitchSource, Switches};
use derived::{
    assign_agent_role, assign_environment, assign_protected, assign_require_approval,
    assign_task_environment, check_agent_role, check_env_list, check_environment, check_protected,
    check_require_approval, check_short_text, check_task_environment, check_token,
};
pub use derived::{file_environment, file_protected_operations, file_require_approval};
pub use not_agents::set_agent_test;
use not_agents::{
    check_audit_destination, check_audit_level, check_audit_statement_max, check_mode,
    check_preview_timeout, check_recycle_max_bytes, check_recycle_retention, check_review_ttl,
    check_token_ttl,
};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use std::ffi::{c_int, CStr, CString};

/// Longest accepted task id, environment name or token text.
pub const MAX_TEXT: usize = 200;

// --- The settings -----------------------------------------------------------

/// For DBAs: the group role whose members (directly or through other roles)
/// are agents. Superuser-only, or an agent could name a group it is not in.
static AGENT_ROLE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"ai_agent"));

/// For DBAs, per database: agents need an approval token for the protected
/// operations here. The switch that turns the guard on.
static REQUIRE_APPROVAL: GucSetting<bool> = GucSetting::<bool>::new(false);

/// For DBAs, per database: which operation classes need a token. Parsed by
/// the assign hook into `PROTECTED_BITS`, so the hot path reads one byte.
static PROTECTED_OPERATIONS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"DROP, DELETE, TRUNCATE"));

/// For agents: the token presented for the next protected statement.
/// Anyone may set it; the hook checks it against the tokens table.
static APPROVAL_TOKEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));

/// For DBAs: how long a granted token stays usable (read by the SQL API).
static TOKEN_TTL: GucSetting<i32> = GucSetting::<i32>::new(15 * 60);

/// For DBAs, per database: this database's environment label.
static ENVIRONMENT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));

/// For DBAs, per agent role: the environments it may act in.
static ALLOWED_ENVIRONMENTS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c""));

/// For agents: the task they work on, carried into refusals and audit events.
static TASK_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));

/// For agents: the environment their task is meant for; writes elsewhere are
/// refused. An agent may declare it, never widen its scope with it.
static TASK_ENVIRONMENT: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c""));

/// For DBAs (postgresql.conf): the longest VALID UNTIL horizon an agent role
/// may hold at login.
static MAX_CREDENTIAL_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(24 * 3600);

/// For clients: reported after login (GUC_REPORT), "did this session log in
/// as an agent". Its show hook finishes the agent's login checks.
static AGENT_SESSION: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"off"));

/// For DBAs, per database: `enforce` refuses; `audit` only records what would
/// be refused (shadow mode, for rollout). Stores a `Mode` ordinal.
static MODE: GucSetting<i32> = GucSetting::<i32>::new(0);

/// For DBAs: what the audit log records about agents. Stores an `AuditLevel`
/// ordinal.
static AUDIT_LEVEL: GucSetting<i32> = GucSetting::<i32>::new(0);

/// For DBAs: where the allowed statements `audit_level` adds are recorded.
/// Stores an `AuditDestination` ordinal (0: both).
static AUDIT_DESTINATION: GucSetting<i32> = GucSetting::<i32>::new(0);

/// For DBAs (postgresql.conf): events older than this are purged.
static AUDIT_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(365 * 24 * 3600);

/// For DBAs: statement text in events is cut at this many characters.
static AUDIT_STATEMENT_MAX: GucSetting<i32> = GucSetting::<i32>::new(2000);

/// For DBAs: how long the dry run of a request's statement (its preview)
/// may take, in milliseconds.
static PREVIEW_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(5000);

/// For DBAs: how long a prepared review waits for an approver before the
/// audit writer rolls it back, in seconds.
static REVIEW_TTL: GucSetting<i32> = GucSetting::<i32>::new(15 * 60);

/// For DBAs: how long the recycle bin keeps what an agent dropped, in
/// seconds; 0 turns it off.
static RECYCLE_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(7 * 24 * 3600);

/// For DBAs: how much the recycle bin keeps of one database's rows, in kB;
/// -1 is no limit.
static RECYCLE_MAX_BYTES: GucSetting<i32> = GucSetting::<i32>::new(-1);

/// For DBAs, in postgresql.conf: the subject of the client certificate the
/// nodes of a distributed cluster (Citus) present to each other, as
/// `pg_stat_ssl.client_dn` shows it; empty: no connection is a node's.
static CLUSTER_NODE_CERTIFICATE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c""));

// --- Typed accessors ---------------------------------------------------------

/// A string setting's current value, trimmed; `None` when empty. Read through
/// the raw pointer: no copy, no allocation (agents' statements read several).
fn text(setting: &'static GucSetting<Option<CString>>) -> Option<&'static str> {
    // SAFETY: PostgreSQL keeps the string alive until the setting changes,
    // which cannot happen while the caller uses it within one statement.
    let p = unsafe { *setting.as_ptr() };
    if p.is_null() {
        return None;
    }
    // SAFETY: a string setting's value is NUL-terminated.
    let s = unsafe { CStr::from_ptr(p) }.to_str().ok()?.trim();
    (!s.is_empty()).then_some(s)
}

/// An integer or enum setting's current value.
fn int(setting: &'static GucSetting<i32>) -> i32 {
    // SAFETY: PostgreSQL writes it only from this backend's own thread.
    unsafe { *setting.as_ptr() }
}

pub fn agent_role() -> Option<&'static str> {
    text(&AGENT_ROLE)
}
pub fn agent_role_generation() -> u64 {
    derived::agent_role_generation()
}
pub fn require_approval() -> bool {
    // SAFETY: as for `int`.
    unsafe { *REQUIRE_APPROVAL.as_ptr() }
}
pub fn protected_operations() -> OpSet {
    derived::protected_operations()
}
pub fn approval_token() -> Option<&'static str> {
    text(&APPROVAL_TOKEN)
}
pub fn token_ttl_seconds() -> i32 {
    int(&TOKEN_TTL)
}
pub fn environment() -> Option<&'static str> {
    text(&ENVIRONMENT)
}
pub fn allowed_environments() -> Option<Vec<String>> {
    text(&ALLOWED_ENVIRONMENTS).map(aas_policy::credentials::parse_list)
}
pub fn task_id() -> Option<&'static str> {
    text(&TASK_ID)
}
pub fn task_environment() -> Option<&'static str> {
    text(&TASK_ENVIRONMENT)
}
pub fn max_credential_lifetime_seconds() -> i64 {
    int(&MAX_CREDENTIAL_LIFETIME) as i64
}
pub fn mode() -> Mode {
    Mode::ALL[int(&MODE) as usize]
}
pub fn audit_level() -> AuditLevel {
    AuditLevel::ALL[int(&AUDIT_LEVEL) as usize]
}
pub fn audit_destination() -> AuditDestination {
    AuditDestination::ALL[int(&AUDIT_DESTINATION) as usize]
}
pub fn preview_timeout_ms() -> i32 {
    int(&PREVIEW_TIMEOUT)
}
pub fn review_ttl_s() -> i64 {
    int(&REVIEW_TTL) as i64
}
pub fn recycle_retention_s() -> i64 {
    int(&RECYCLE_RETENTION) as i64
}
/// The recycle bin's budget for one database, in bytes (`None`: no limit).
pub fn recycle_max_bytes() -> Option<i64> {
    let kb = int(&RECYCLE_MAX_BYTES);
    (kb >= 0).then_some(kb as i64 * 1024)
}
pub fn cluster_node_certificate() -> Option<&'static str> {
    text(&CLUSTER_NODE_CERTIFICATE)
}
pub fn audit_statement_max() -> usize {
    int(&AUDIT_STATEMENT_MAX).max(0) as usize
}

/// The settings that bear on how an agent's statement is treated
/// (`aas_policy::treatment`), as they are now.
pub fn switches() -> Switches<'static> {
    Switches {
        require_approval: require_approval(),
        protected: protected_operations(),
        audit_level: audit_level(),
        mode: mode(),
        environment: environment(),
        task_environment: task_environment(),
    }
}

/// The live settings, each read only when `aas_policy::treatment` asks for
/// it: the hooks' way to ask about every agent statement.
pub struct Live;

impl SwitchSource for Live {
    fn require_approval(&self) -> bool {
        require_approval()
    }
    fn protected(&self) -> OpSet {
        protected_operations()
    }
    fn audit_level(&self) -> AuditLevel {
        audit_level()
    }
    fn task_environment_mismatch(&self) -> bool {
        // Kept current by the two settings' assign hooks: one load.
        derived::task_environment_mismatch()
    }
}

/// The options of an enum setting, from the policy crate's vocabulary, so
/// the accepted words are the ones `as_str` spells. Built once, kept for the
/// life of the process as PostgreSQL requires.
fn enum_options(words: impl Iterator<Item = &'static str>) -> *const pg_sys::config_enum_entry {
    let mut entries: Vec<pg_sys::config_enum_entry> = words
        .enumerate()
        .map(|(i, w)| pg_sys::config_enum_entry {
            name: CString::new(w).expect("no NUL in a word").into_raw(),
            val: i as c_int,
            hidden: false,
        })
        .collect();
    entries.push(pg_sys::config_enum_entry {
        name: std::ptr::null(),
        val: 0,
        hidden: false,
    });
    Box::leak(entries.into_boxed_slice()).as_ptr()
}

/// Defines an enum setting stored as the ordinal of a policy enum.
///
/// # Safety
/// Called once per name from `_PG_init`.
unsafe fn define_enum(
    name: &'static CStr,
    desc: &'static CStr,
    setting: &'static GucSetting<i32>,
    words: impl Iterator<Item = &'static str>,
    check: pg_sys::GucEnumCheckHook,
) {
    // SAFETY: the options table lives for the process; PostgreSQL writes the
    // chosen ordinal into the setting's storage.
    unsafe {
        pg_sys::DefineCustomEnumVariable(
            name.as_ptr(),
            desc.as_ptr(),
            std::ptr::null(),
            setting.as_ptr(),
            0,
            enum_options(words),
            pg_sys::GucContext::PGC_SUSET,
            0,
            check,
            None,
            None,
        );
    }
}

/// Defines every setting. Called once from `_PG_init`. `show_agent_session`
/// is the login glue's show hook for `ai_agent_safety.agent_session`.
pub fn define(show_agent_session: pg_sys::GucShowHook) {
    let none = GucFlags::default();
    let list = GucFlags::from_bits_retain(pg_sys::GUC_LIST_INPUT as i32);
    // SAFETY: each hook is a #[pg_guard] function with the signature
    // PostgreSQL expects, and each setting is defined once, here.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"ai_agent_safety.agent_role",
            c"Group role whose members (directly or through other roles) are AI agents.",
            c"",
            &AGENT_ROLE,
            GucContext::Suset,
            none,
            Some(check_agent_role),
            Some(assign_agent_role),
            None,
        );
        GucRegistry::define_bool_guc_with_hooks(
            c"ai_agent_safety.require_approval",
            c"Agents need a human-granted approval token for protected operations in this database.",
            c"",
            &REQUIRE_APPROVAL,
            GucContext::Suset,
            none,
            Some(check_require_approval),
            Some(assign_require_approval),
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"ai_agent_safety.protected_operations",
            c"Operation classes that need approval: any of DROP, DELETE, TRUNCATE, UPDATE, ALTER.",
            c"",
            &PROTECTED_OPERATIONS,
            GucContext::Suset,
            list,
            Some(check_protected),
            Some(assign_protected),
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"ai_agent_safety.approval_token",
            c"Approval token presented by an agent for its next protected statement.",
            c"",
            &APPROVAL_TOKEN,
            GucContext::Userset,
            none,
            Some(check_token),
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"ai_agent_safety.token_ttl",
            c"How long a granted approval token stays usable.",
            c"",
            &TOKEN_TTL,
            1,
            7 * 24 * 3600,
            GucContext::Suset,
            GucFlags::UNIT_S,
            Some(check_token_ttl),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"ai_agent_safety.environment",
            c"Environment label of this database, for example production or development.",
            c"",
            &ENVIRONMENT,
            GucContext::Suset,
            none,
            Some(check_environment),
            Some(assign_environment),
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"ai_agent_safety.allowed_environments",
            c"Environments an agent role may act in (set with ALTER ROLE).",
            c"",
            &ALLOWED_ENVIRONMENTS,
            GucContext::Suset,
            list,
            Some(check_env_list),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"ai_agent_safety.task_id",
            c"The task the agent is working on; carried into every denial and audit event.",
            c"",
            &TASK_ID,
            GucContext::Userset,
            none,
            Some(check_short_text),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"ai_agent_safety.task_environment",
            c"The environment the agent's task is meant for; writes elsewhere are refused.",
            c"",
            &TASK_ENVIRONMENT,
            GucContext::Userset,
            none,
            Some(check_task_environment),
            Some(assign_task_environment),
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"ai_agent_safety.max_credential_lifetime",
            c"Longest VALID UNTIL horizon an agent role may hold.",
            c"",
            &MAX_CREDENTIAL_LIFETIME,
            1,
            i32::MAX,
            GucContext::Sighup,
            GucFlags::UNIT_S,
            None,
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"ai_agent_safety.cluster_node_certificate",
            c"Subject of the client certificate the nodes of a distributed cluster present to each other (as pg_stat_ssl.client_dn shows it): their statements were judged on the node that sent them.",
            c"",
            &CLUSTER_NODE_CERTIFICATE,
            GucContext::Sighup,
            GucFlags::SUPERUSER_ONLY,
            None,
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"ai_agent_safety.agent_session",
            c"Whether this session logged in as an AI agent (reported to the client).",
            c"",
            &AGENT_SESSION,
            GucContext::Internal,
            GucFlags::REPORT
                | GucFlags::DISALLOW_IN_FILE
                | GucFlags::from_bits_retain(pg_sys::GUC_NOT_IN_SAMPLE as i32),
            None,
            None,
            show_agent_session,
        );
        define_enum(
            c"ai_agent_safety.mode",
            c"enforce refuses; audit only records what would be refused (shadow mode).",
            &MODE,
            Mode::ALL.iter().map(|m| m.as_str()),
            Some(check_mode),
        );
        define_enum(
            c"ai_agent_safety.audit_level",
            c"What the audit log records about agents: decisions, writes or all statements.",
            &AUDIT_LEVEL,
            AuditLevel::ALL.iter().map(|l| l.as_str()),
            Some(check_audit_level),
        );
        define_enum(
            c"ai_agent_safety.audit_destination",
            c"Where the allowed agent statements that audit_level records go: both, table or log. Decisions always go to both.",
            &AUDIT_DESTINATION,
            AuditDestination::ALL.iter().map(|d| d.as_str()),
            Some(check_audit_destination),
        );
        GucRegistry::define_int_guc_with_hooks(
            c"ai_agent_safety.audit_retention",
            c"Audit events older than this are purged by the writer.",
            c"",
            &AUDIT_RETENTION,
            1,
            i32::MAX,
            GucContext::Sighup,
            GucFlags::UNIT_S,
            None,
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"ai_agent_safety.audit_statement_max",
            c"Statement text in audit events is cut at this many characters (the cut is shown).",
            c"",
            &AUDIT_STATEMENT_MAX,
            0,
            1_000_000,
            GucContext::Suset,
            none,
            Some(check_audit_statement_max),
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"ai_agent_safety.preview_timeout",
            c"How long the dry run of a request's statement (its preview) may take.",
            c"",
            &PREVIEW_TIMEOUT,
            10,
            600_000,
            GucContext::Suset,
            GucFlags::UNIT_MS,
            Some(check_preview_timeout),
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"ai_agent_safety.review_ttl",
            c"How long a prepared review waits for an approver before it is rolled back.",
            c"",
            &REVIEW_TTL,
            1,
            30 * 24 * 3600,
            GucContext::Suset,
            GucFlags::UNIT_S,
            Some(check_review_ttl),
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"ai_agent_safety.recycle_retention",
            c"How long the recycle bin keeps what an agent dropped; 0 turns it off.",
            c"",
            &RECYCLE_RETENTION,
            0,
            3650 * 24 * 3600,
            GucContext::Suset,
            GucFlags::UNIT_S,
            Some(check_recycle_retention),
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"ai_agent_safety.recycle_max_bytes",
            c"How much the recycle bin keeps of one database's rows; an agent's TRUNCATE that would keep more is refused; -1 is no limit.",
            c"",
            &RECYCLE_MAX_BYTES,
            -1,
            i32::MAX,
            GucContext::Suset,
            GucFlags::UNIT_KB,
            Some(check_recycle_max_bytes),
            None,
            None,
        );
        pg_sys::MarkGUCPrefixReserved(c"ai_agent_safety".as_ptr());
    }
}
