//! Every `ai_agent_safety.*` setting: its context, default, parsing and validation.
//!
//! Configuration lives in PostgreSQL's own settings, so it can be set per database
//! (`ALTER DATABASE ... SET`), per role, or in postgresql.conf. Settings that
//! restrict agents are superuser-only (PGC_SUSET), so an agent cannot change them
//! with SET, set_config, ALTER ROLE or ALTER DATABASE.

use aas_policy::OpSet;
use pgrx::pg_sys;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;

// The variables PostgreSQL writes the settings into. A backend is single-threaded.
static mut AGENT_ROLE: *mut c_char = ptr::null_mut();
static mut REQUIRE_APPROVAL: bool = false;
static mut PROTECTED_OPERATIONS: *mut c_char = ptr::null_mut();
static mut PROTECTED_BITS: u8 = 0b111; // DROP, DELETE, TRUNCATE
static mut APPROVAL_TOKEN: *mut c_char = ptr::null_mut();
static mut TOKEN_TTL_S: c_int = 15 * 60;
static mut ENVIRONMENT: *mut c_char = ptr::null_mut();
static mut ALLOWED_ENVIRONMENTS: *mut c_char = ptr::null_mut();
static mut TASK_ID: *mut c_char = ptr::null_mut();
static mut TASK_ENVIRONMENT: *mut c_char = ptr::null_mut();
static mut AGENT_SESSION: *mut c_char = ptr::null_mut();
static mut MODE: c_int = MODE_ENFORCE;
static mut AUDIT_LEVEL: c_int = crate::audit::LEVEL_DECISIONS;
static mut AUDIT_RETENTION_S: c_int = 365 * 24 * 3600;
static mut AUDIT_STATEMENT_MAX: c_int = 2000;

pub const MODE_ENFORCE: c_int = 0;
pub const MODE_AUDIT: c_int = 1;

static mut MODE_OPTIONS: [pg_sys::config_enum_entry; 3] = [
    pg_sys::config_enum_entry {
        name: c"enforce".as_ptr(),
        val: MODE_ENFORCE,
        hidden: false,
    },
    pg_sys::config_enum_entry {
        name: c"audit".as_ptr(),
        val: MODE_AUDIT,
        hidden: false,
    },
    pg_sys::config_enum_entry {
        name: ptr::null(),
        val: 0,
        hidden: false,
    },
];
static mut LEVEL_OPTIONS: [pg_sys::config_enum_entry; 4] = [
    pg_sys::config_enum_entry {
        name: c"decisions".as_ptr(),
        val: crate::audit::LEVEL_DECISIONS,
        hidden: false,
    },
    pg_sys::config_enum_entry {
        name: c"writes".as_ptr(),
        val: crate::audit::LEVEL_WRITES,
        hidden: false,
    },
    pg_sys::config_enum_entry {
        name: c"all".as_ptr(),
        val: crate::audit::LEVEL_ALL,
        hidden: false,
    },
    pg_sys::config_enum_entry {
        name: ptr::null(),
        val: 0,
        hidden: false,
    },
];

static mut MAX_CREDENTIAL_LIFETIME_S: c_int = 24 * 3600;

/// Values that came from postgresql.conf, the command line or the built-in default,
/// before any database or role setting. DROP DATABASE x falls back to these when x
/// has no setting of its own.
static mut FILE_REQUIRE_APPROVAL: bool = false;
static mut FILE_PROTECTED: Option<String> = None;
static mut FILE_ENVIRONMENT: Option<String> = None;

/// Longest accepted task id, environment name or token text.
pub const MAX_TEXT: usize = 200;

/// Bumped whenever agent_role changes, so the identity cache is rebuilt.
pub static mut AGENT_ROLE_GENERATION: u64 = 0;

fn opt_str(p: *mut c_char) -> Option<&'static str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: PostgreSQL keeps the string alive until the setting changes.
    let s = unsafe { CStr::from_ptr(p) }.to_str().ok()?;
    let s = s.trim();
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

pub fn agent_role() -> Option<&'static str> {
    unsafe { opt_str(AGENT_ROLE) }
}
pub fn require_approval() -> bool {
    unsafe { REQUIRE_APPROVAL }
}
pub fn protected_operations() -> OpSet {
    OpSet::from_bits(unsafe { PROTECTED_BITS })
}
pub fn approval_token() -> Option<&'static str> {
    unsafe { opt_str(APPROVAL_TOKEN) }
}
pub fn token_ttl_seconds() -> i32 {
    unsafe { TOKEN_TTL_S }
}
pub fn environment() -> Option<&'static str> {
    unsafe { opt_str(ENVIRONMENT) }
}
pub fn allowed_environments() -> Option<Vec<String>> {
    unsafe { opt_str(ALLOWED_ENVIRONMENTS) }.map(aas_policy::credentials::parse_list)
}
pub fn task_id() -> Option<&'static str> {
    unsafe { opt_str(TASK_ID) }
}
pub fn task_environment() -> Option<&'static str> {
    unsafe { opt_str(TASK_ENVIRONMENT) }
}
pub fn max_credential_lifetime_seconds() -> i64 {
    unsafe { MAX_CREDENTIAL_LIFETIME_S as i64 }
}
/// Cheap test used on every statement of an agent: is anything configured that
/// could refuse or record a statement in this database?
pub fn anything_to_enforce() -> bool {
    unsafe { REQUIRE_APPROVAL || AUDIT_LEVEL > 0 || opt_str(TASK_ENVIRONMENT).is_some() }
}
/// Could the task-environment rule refuse a write here? Only when a task
/// environment is declared and differs from this database's label.
pub fn task_environment_mismatch() -> bool {
    match task_environment() {
        Some(t) => environment() != Some(t),
        None => false,
    }
}
pub fn audit_mode() -> bool {
    unsafe { MODE == MODE_AUDIT }
}
pub fn audit_level() -> i32 {
    unsafe { AUDIT_LEVEL }
}
pub fn audit_statement_max() -> usize {
    unsafe { AUDIT_STATEMENT_MAX.max(0) as usize }
}

pub fn file_require_approval() -> bool {
    unsafe { FILE_REQUIRE_APPROVAL }
}
pub fn file_protected_operations() -> OpSet {
    unsafe {
        (*ptr::addr_of!(FILE_PROTECTED))
            .as_deref()
            .and_then(|s| OpSet::parse(s).ok())
            .unwrap_or_else(OpSet::default_set)
    }
}
pub fn file_environment() -> Option<String> {
    unsafe { (*ptr::addr_of!(FILE_ENVIRONMENT)).clone() }
}

fn is_file_level(source: pg_sys::GucSource::Type) -> bool {
    source <= pg_sys::GucSource::PGC_S_ARGV
}

/// Reports a check-hook failure the way PostgreSQL's GUC_check_errdetail does.
unsafe fn check_fail(detail: &str, hint: Option<&str>) -> bool {
    pg_sys::GUC_check_errcode(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as i32);
    pg_sys::GUC_check_errdetail_string = palloc_str(detail);
    if let Some(h) = hint {
        pg_sys::GUC_check_errhint_string = palloc_str(h);
    }
    false
}

unsafe fn palloc_str(s: &str) -> *mut c_char {
    let c = std::ffi::CString::new(s.replace('\0', "")).unwrap_or_default();
    pg_sys::pstrdup(c.as_ptr())
}

fn newval_str(newval: *mut *mut c_char) -> Option<String> {
    unsafe {
        if newval.is_null() || (*newval).is_null() {
            return None;
        }
        Some(CStr::from_ptr(*newval).to_string_lossy().into_owned())
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_protected(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    let v = newval_str(newval).unwrap_or_default();
    match OpSet::parse(&v) {
        Ok(_) => {
            if is_file_level(source) {
                *ptr::addr_of_mut!(FILE_PROTECTED) = Some(v);
            }
            true
        }
        Err(e) => check_fail(
            &format!("ai_agent_safety.protected_operations: {e}."),
            Some("Example: SET ai_agent_safety.protected_operations = 'DROP, DELETE, TRUNCATE, UPDATE, ALTER'"),
        ),
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_protected(newval: *const c_char, _extra: *mut c_void) {
    let v = if newval.is_null() {
        String::new()
    } else {
        CStr::from_ptr(newval).to_string_lossy().into_owned()
    };
    PROTECTED_BITS = OpSet::parse(&v)
        .unwrap_or_else(|_| OpSet::default_set())
        .bits();
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_require_approval(
    newval: *mut bool,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    if is_file_level(source) && !newval.is_null() {
        FILE_REQUIRE_APPROVAL = *newval;
    }
    true
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_environment(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    let v = newval_str(newval).unwrap_or_default();
    if !check_label(&v) {
        return check_fail(
            &format!("\"{v}\" is not a valid environment label: use at most {MAX_TEXT} characters, without commas or quotes."),
            None,
        );
    }
    if is_file_level(source) {
        let t = v.trim();
        *ptr::addr_of_mut!(FILE_ENVIRONMENT) = if t.is_empty() {
            None
        } else {
            Some(t.to_string())
        };
    }
    true
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_task_environment(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let v = newval_str(newval).unwrap_or_default();
    if !check_label(&v) {
        return check_fail(
            &format!("\"{v}\" is not a valid environment label: use at most {MAX_TEXT} characters, without commas or quotes."),
            None,
        );
    }
    true
}

fn check_label(v: &str) -> bool {
    v.len() <= MAX_TEXT && !v.contains(',') && !v.contains('"') && !v.contains('\'')
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_env_list(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let v = newval_str(newval).unwrap_or_default();
    if v.len() > 10 * MAX_TEXT || v.contains('\'') {
        return check_fail(
            "ai_agent_safety.allowed_environments must be a comma-separated list of environment labels.",
            Some("Example: ALTER ROLE cleanup_bot SET ai_agent_safety.allowed_environments = 'development, staging'"),
        );
    }
    true
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_short_text(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let v = newval_str(newval).unwrap_or_default();
    if v.chars().count() > MAX_TEXT {
        return check_fail(
            &format!(
                "The value is {} characters long; at most {MAX_TEXT} are accepted.",
                v.chars().count()
            ),
            None,
        );
    }
    true
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_token(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let v = newval_str(newval).unwrap_or_default();
    if v.trim().is_empty() || aas_policy::parse_token_id(&v).is_some() {
        return true;
    }
    let shown: String = v.chars().take(60).collect();
    check_fail(
        &format!("\"{shown}\" is not an approval token id; a token id is the UUID that request_approval_token returned."),
        Some("Example: SET ai_agent_safety.approval_token = '3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f'"),
    )
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_agent_role(_newval: *const c_char, _extra: *mut c_void) {
    AGENT_ROLE_GENERATION = AGENT_ROLE_GENERATION.wrapping_add(1);
}

unsafe fn define_string(
    name: &'static CStr,
    desc: &'static CStr,
    var: *mut *mut c_char,
    boot: &'static CStr,
    context: pg_sys::GucContext::Type,
    flags: u32,
    check: pg_sys::GucStringCheckHook,
    assign: pg_sys::GucStringAssignHook,
) {
    pg_sys::DefineCustomStringVariable(
        name.as_ptr(),
        desc.as_ptr(),
        ptr::null(),
        var,
        boot.as_ptr(),
        context,
        flags as c_int,
        check,
        assign,
        None,
    );
}

/// An integer setting: `(default, min, max)`, with a unit flag such as GUC_UNIT_S.
unsafe fn define_int(
    name: &'static CStr,
    desc: &'static CStr,
    var: *mut c_int,
    (boot, min, max): (c_int, c_int, c_int),
    context: pg_sys::GucContext::Type,
    flags: c_int,
) {
    pg_sys::DefineCustomIntVariable(
        name.as_ptr(),
        desc.as_ptr(),
        ptr::null(),
        var,
        boot,
        min,
        max,
        context,
        flags,
        None,
        None,
        None,
    );
}

/// Defines every setting. Called once from `_PG_init`.
pub fn define() {
    use pg_sys::GucContext::{PGC_SIGHUP, PGC_SUSET, PGC_USERSET};
    let list = pg_sys::GUC_LIST_INPUT;
    unsafe {
        define_string(
            c"ai_agent_safety.agent_role",
            c"Group role whose members (directly or through other roles) are AI agents.",
            ptr::addr_of_mut!(AGENT_ROLE),
            c"ai_agent",
            PGC_SUSET,
            0,
            Some(check_short_text),
            Some(assign_agent_role),
        );
        pg_sys::DefineCustomBoolVariable(
            c"ai_agent_safety.require_approval".as_ptr(),
            c"Agents need a human-granted approval token for protected operations in this database.".as_ptr(),
            ptr::null(),
            ptr::addr_of_mut!(REQUIRE_APPROVAL),
            false,
            PGC_SUSET,
            0,
            Some(check_require_approval),
            None,
            None,
        );
        define_string(
            c"ai_agent_safety.protected_operations",
            c"Operation classes that need approval: any of DROP, DELETE, TRUNCATE, UPDATE, ALTER.",
            ptr::addr_of_mut!(PROTECTED_OPERATIONS),
            c"DROP, DELETE, TRUNCATE",
            PGC_SUSET,
            list,
            Some(check_protected),
            Some(assign_protected),
        );
        define_string(
            c"ai_agent_safety.approval_token",
            c"Approval token presented by an agent for its next protected statement.",
            ptr::addr_of_mut!(APPROVAL_TOKEN),
            c"",
            PGC_USERSET,
            0,
            Some(check_token),
            None,
        );
        define_int(
            c"ai_agent_safety.token_ttl",
            c"How long a granted approval token stays usable.",
            ptr::addr_of_mut!(TOKEN_TTL_S),
            (15 * 60, 1, 7 * 24 * 3600),
            PGC_SUSET,
            pg_sys::GUC_UNIT_S as c_int,
        );
        define_string(
            c"ai_agent_safety.environment",
            c"Environment label of this database, for example production or development.",
            ptr::addr_of_mut!(ENVIRONMENT),
            c"",
            PGC_SUSET,
            0,
            Some(check_environment),
            None,
        );
        define_string(
            c"ai_agent_safety.allowed_environments",
            c"Environments an agent role may act in (set with ALTER ROLE).",
            ptr::addr_of_mut!(ALLOWED_ENVIRONMENTS),
            c"",
            PGC_SUSET,
            list,
            Some(check_env_list),
            None,
        );
        define_string(
            c"ai_agent_safety.task_id",
            c"The task the agent is working on; carried into every denial and audit event.",
            ptr::addr_of_mut!(TASK_ID),
            c"",
            PGC_USERSET,
            0,
            Some(check_short_text),
            None,
        );
        define_string(
            c"ai_agent_safety.task_environment",
            c"The environment the agent's task is meant for; writes elsewhere are refused.",
            ptr::addr_of_mut!(TASK_ENVIRONMENT),
            c"",
            PGC_USERSET,
            0,
            Some(check_task_environment),
            None,
        );
        define_int(
            c"ai_agent_safety.max_credential_lifetime",
            c"Longest VALID UNTIL horizon an agent role may hold.",
            ptr::addr_of_mut!(MAX_CREDENTIAL_LIFETIME_S),
            (24 * 3600, 1, i32::MAX),
            PGC_SIGHUP,
            pg_sys::GUC_UNIT_S as c_int,
        );
        // Reported to the client after login; its show hook finishes the agent's
        // login checks once per-database and per-role settings are applied.
        pg_sys::DefineCustomStringVariable(
            c"ai_agent_safety.agent_session".as_ptr(),
            c"Whether this session logged in as an AI agent (reported to the client).".as_ptr(),
            ptr::null(),
            ptr::addr_of_mut!(AGENT_SESSION),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_INTERNAL,
            (pg_sys::GUC_REPORT | pg_sys::GUC_NOT_IN_SAMPLE | pg_sys::GUC_DISALLOW_IN_FILE)
                as c_int,
            None,
            None,
            Some(crate::auth::show_agent_session),
        );
        pg_sys::DefineCustomEnumVariable(
            c"ai_agent_safety.mode".as_ptr(),
            c"enforce refuses; audit only records what would be refused (shadow mode).".as_ptr(),
            ptr::null(),
            ptr::addr_of_mut!(MODE),
            MODE_ENFORCE,
            ptr::addr_of!(MODE_OPTIONS) as *const pg_sys::config_enum_entry,
            PGC_SUSET,
            0,
            None,
            None,
            None,
        );
        pg_sys::DefineCustomEnumVariable(
            c"ai_agent_safety.audit_level".as_ptr(),
            c"What the audit log records about agents: decisions, writes or all statements."
                .as_ptr(),
            ptr::null(),
            ptr::addr_of_mut!(AUDIT_LEVEL),
            crate::audit::LEVEL_DECISIONS,
            ptr::addr_of!(LEVEL_OPTIONS) as *const pg_sys::config_enum_entry,
            PGC_SUSET,
            0,
            None,
            None,
            None,
        );
        define_int(
            c"ai_agent_safety.audit_retention",
            c"Audit events older than this are purged by the writer.",
            ptr::addr_of_mut!(AUDIT_RETENTION_S),
            (365 * 24 * 3600, 1, i32::MAX),
            PGC_SIGHUP,
            pg_sys::GUC_UNIT_S as c_int,
        );
        pg_sys::DefineCustomIntVariable(
            c"ai_agent_safety.audit_statement_max".as_ptr(),
            c"Statement text in audit events is cut at this many characters (the cut is shown)."
                .as_ptr(),
            ptr::null(),
            ptr::addr_of_mut!(AUDIT_STATEMENT_MAX),
            2000,
            0,
            1_000_000,
            PGC_SUSET,
            0,
            None,
            None,
            None,
        );
        pg_sys::MarkGUCPrefixReserved(c"ai_agent_safety".as_ptr());
    }
}
