//! What the settings' hooks derive from values and store: the parsed
//! protected classes, the agent-role generation, and the file-level values
//! that DROP DATABASE x falls back to. Check hooks only validate; assign
//! hooks store.

use super::MAX_TEXT;
use aas_policy::OpSet;
use pgrx::pg_sys;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;

/// `protected_operations`, parsed by its assign hook, so the hot path reads
/// one byte.
static PROTECTED_BITS: AtomicU8 = AtomicU8::new(0b111);

/// Bumped whenever agent_role changes, so the identity cache is rebuilt.
static AGENT_ROLE_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Values that came from postgresql.conf, the command line or the built-in
/// default, before any database or role setting: DROP DATABASE x falls back
/// to these when x has no setting of its own. Stored by assign hooks when the
/// value being assigned came from such a source (the check hook marks it in
/// the value's `extra`). A reload whose file value is overridden in this
/// session by a database setting is not assigned by PostgreSQL, so that
/// value reaches this backend's fallback at its next connection.
struct FileLevel {
    require_approval: AtomicBool,
    protected: Mutex<Option<String>>,
    environment: Mutex<Option<String>>,
}
static FILE_LEVEL: FileLevel = FileLevel {
    require_approval: AtomicBool::new(false),
    protected: Mutex::new(None),
    environment: Mutex::new(None),
};

pub fn protected_operations() -> OpSet {
    OpSet::from_bits(PROTECTED_BITS.load(Relaxed))
}

pub fn agent_role_generation() -> u64 {
    AGENT_ROLE_GENERATION.load(Relaxed)
}

pub fn file_require_approval() -> bool {
    FILE_LEVEL.require_approval.load(Relaxed)
}
pub fn file_protected_operations() -> OpSet {
    FILE_LEVEL
        .protected
        .lock()
        .ok()
        .and_then(|v| v.as_deref().and_then(|s| OpSet::parse(s).ok()))
        .unwrap_or_else(OpSet::default_set)
}
pub fn file_environment() -> Option<String> {
    FILE_LEVEL.environment.lock().ok().and_then(|v| v.clone())
}

fn is_file_level(source: pg_sys::GucSource::Type) -> bool {
    source <= pg_sys::GucSource::PGC_S_ARGV
}

/// Marks, in the value's `extra`, whether it came from a file-level source,
/// for the assign hook. PostgreSQL owns and frees the `extra`.
///
/// # Safety
/// `extra` is the check hook's `extra` argument.
unsafe fn mark_source(extra: *mut *mut c_void, source: pg_sys::GucSource::Type) -> bool {
    // Where the server's API differs: PostgreSQL 15 frees a setting's extra
    // with free(); 16 and later keep it in a memory context through guc_malloc.
    #[cfg(feature = "pg15")]
    // SAFETY: malloc of one byte; PostgreSQL 15 frees extras with free().
    let p = unsafe { libc_malloc(1) } as *mut bool;
    #[cfg(not(feature = "pg15"))]
    // SAFETY: guc_malloc with LOG returns NULL on failure instead of raising.
    let p = unsafe { pg_sys::guc_malloc(pg_sys::LOG as std::ffi::c_int, 1) } as *mut bool;
    if p.is_null() {
        return false;
    }
    // SAFETY: p points to one writable byte; extra is a valid out-pointer.
    unsafe {
        *p = is_file_level(source);
        *extra = p as *mut c_void;
    }
    true
}

#[cfg(feature = "pg15")]
extern "C" {
    #[link_name = "malloc"]
    fn libc_malloc(size: usize) -> *mut c_void;
}

/// Did the value being assigned come from a file-level source?
///
/// # Safety
/// `extra` is NULL or the extra set by [`mark_source`].
unsafe fn came_from_file(extra: *mut c_void) -> bool {
    // SAFETY: per this function's contract.
    !extra.is_null() && unsafe { *(extra as *const bool) }
}

/// Reports a check-hook failure: an invalid value, with detail and hint.
///
/// # Safety
/// Called from a check hook.
unsafe fn check_fail(detail: &str, hint: Option<&str>) -> bool {
    // SAFETY: per this function's contract.
    unsafe {
        crate::pg::guc_check_error(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            None,
            detail,
            hint,
        )
    }
}

/// The text of a string setting's proposed or assigned value.
///
/// # Safety
/// `p` is NULL or NUL-terminated.
unsafe fn value_text(p: *const c_char) -> String {
    // SAFETY: per this function's contract.
    unsafe { crate::pg::cstr(p) }
}

/// # Safety
/// `newval` is a check hook's `newval`.
unsafe fn proposed(newval: *mut *mut c_char) -> String {
    if newval.is_null() {
        return String::new();
    }
    // SAFETY: per this function's contract.
    unsafe { value_text(*newval) }
}

fn label_ok(v: &str) -> bool {
    v.len() <= MAX_TEXT && !v.contains(',') && !v.contains('"') && !v.contains('\'')
}

fn label_error(v: &str) -> String {
    format!("\"{v}\" is not a valid environment label: use at most {MAX_TEXT} characters, without commas or quotes.")
}

#[pgrx::pg_guard]
// SAFETY: a GUC check hook: PostgreSQL passes a valid newval/extra pointer and its source.
pub(super) unsafe extern "C-unwind" fn check_protected(
    newval: *mut *mut c_char,
    extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL's check-hook arguments.
    unsafe {
        if !super::not_agents::allowed("ai_agent_safety.protected_operations", source) {
            return false;
        }
        match OpSet::parse(&proposed(newval)) {
            Ok(_) => mark_source(extra, source),
            Err(e) => check_fail(
                &format!("ai_agent_safety.protected_operations: {e}."),
                Some("Example: SET ai_agent_safety.protected_operations = 'DROP, DELETE, TRUNCATE, UPDATE, ALTER'"),
            ),
        }
    }
}

#[pgrx::pg_guard]
// SAFETY: a GUC assign hook: PostgreSQL passes the new value and the extra its check hook set.
pub(super) unsafe extern "C-unwind" fn assign_protected(newval: *const c_char, extra: *mut c_void) {
    // SAFETY: PostgreSQL's assign-hook arguments.
    let (v, file) = unsafe { (value_text(newval), came_from_file(extra)) };
    let set = OpSet::parse(&v).unwrap_or_else(|_| OpSet::default_set());
    PROTECTED_BITS.store(set.bits(), Relaxed);
    if file {
        if let Ok(mut f) = FILE_LEVEL.protected.lock() {
            *f = Some(v);
        }
    }
}

#[pgrx::pg_guard]
// SAFETY: a GUC check hook: PostgreSQL passes a valid newval/extra pointer and its source.
pub(super) unsafe extern "C-unwind" fn check_require_approval(
    _newval: *mut bool,
    extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL's check-hook arguments.
    unsafe {
        super::not_agents::allowed("ai_agent_safety.require_approval", source)
            && mark_source(extra, source)
    }
}

#[pgrx::pg_guard]
// SAFETY: a GUC assign hook: PostgreSQL passes the new value and the extra its check hook set.
pub(super) unsafe extern "C-unwind" fn assign_require_approval(newval: bool, extra: *mut c_void) {
    // SAFETY: PostgreSQL's assign-hook arguments.
    if unsafe { came_from_file(extra) } {
        FILE_LEVEL.require_approval.store(newval, Relaxed);
    }
}

#[pgrx::pg_guard]
// SAFETY: a GUC check hook: PostgreSQL passes a valid newval/extra pointer and its source.
pub(super) unsafe extern "C-unwind" fn check_environment(
    newval: *mut *mut c_char,
    extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL's check-hook arguments.
    unsafe {
        if !super::not_agents::allowed("ai_agent_safety.environment", source) {
            return false;
        }
        let v = proposed(newval);
        if !label_ok(&v) {
            return check_fail(&label_error(&v), None);
        }
        mark_source(extra, source)
    }
}

#[pgrx::pg_guard]
// SAFETY: a GUC assign hook: PostgreSQL passes the new value and the extra its check hook set.
pub(super) unsafe extern "C-unwind" fn assign_environment(
    newval: *const c_char,
    extra: *mut c_void,
) {
    // SAFETY: PostgreSQL's assign-hook arguments.
    let (v, file) = unsafe { (value_text(newval), came_from_file(extra)) };
    let label = label(&v);
    if file {
        if let Ok(mut f) = FILE_LEVEL.environment.lock() {
            f.clone_from(&label);
        }
    }
    set_labels(Some(label), None);
}

#[pgrx::pg_guard]
// SAFETY: a GUC assign hook: PostgreSQL passes the new value.
pub(super) unsafe extern "C-unwind" fn assign_task_environment(
    newval: *const c_char,
    _extra: *mut c_void,
) {
    // SAFETY: PostgreSQL's assign-hook arguments.
    let v = unsafe { value_text(newval) };
    set_labels(None, Some(label(&v)));
}

/// A label as the settings hold it: trimmed, `None` when empty.
fn label(v: &str) -> Option<String> {
    let t = v.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// This database's label and the task's declared environment, as assigned,
/// and whether they differ (a declared task environment that is not this
/// database's): what the task-environment rule asks of every agent write,
/// kept as one flag so the question costs one load.
static LABELS: Mutex<(Option<String>, Option<String>)> = Mutex::new((None, None));
static TASK_ENVIRONMENT_MISMATCH: AtomicBool = AtomicBool::new(false);

fn set_labels(environment: Option<Option<String>>, task: Option<Option<String>>) {
    if let Ok(mut l) = LABELS.lock() {
        if let Some(e) = environment {
            l.0 = e;
        }
        if let Some(t) = task {
            l.1 = t;
        }
        let mismatch = matches!(&l.1, Some(t) if l.0.as_deref() != Some(t.as_str()));
        TASK_ENVIRONMENT_MISMATCH.store(mismatch, Relaxed);
    }
}

/// Is a task environment declared that differs from this database's label?
pub fn task_environment_mismatch() -> bool {
    TASK_ENVIRONMENT_MISMATCH.load(Relaxed)
}

#[pgrx::pg_guard]
// SAFETY: a GUC check hook: PostgreSQL passes a valid newval/extra pointer and its source.
pub(super) unsafe extern "C-unwind" fn check_task_environment(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL's check-hook arguments.
    unsafe {
        let v = proposed(newval);
        label_ok(&v) || check_fail(&label_error(&v), None)
    }
}

#[pgrx::pg_guard]
// SAFETY: a GUC check hook: PostgreSQL passes a valid newval/extra pointer and its source.
pub(super) unsafe extern "C-unwind" fn check_env_list(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL's check-hook arguments.
    unsafe {
        if !super::not_agents::allowed("ai_agent_safety.allowed_environments", source) {
            return false;
        }
        let v = proposed(newval);
        if v.len() > 10 * MAX_TEXT || v.contains('\'') {
            return check_fail(
                "ai_agent_safety.allowed_environments must be a comma-separated list of environment labels.",
                Some("Example: ALTER ROLE cleanup_bot SET ai_agent_safety.allowed_environments = 'development, staging'"),
            );
        }
        true
    }
}

#[pgrx::pg_guard]
// SAFETY: a GUC check hook: PostgreSQL passes a valid newval/extra pointer and its source.
pub(super) unsafe extern "C-unwind" fn check_short_text(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL's check-hook arguments.
    unsafe {
        let n = proposed(newval).chars().count();
        if n > MAX_TEXT {
            return check_fail(
                &format!("The value is {n} characters long; at most {MAX_TEXT} are accepted."),
                None,
            );
        }
        true
    }
}

#[pgrx::pg_guard]
// SAFETY: a GUC check hook: PostgreSQL passes a valid newval/extra pointer and its source.
pub(super) unsafe extern "C-unwind" fn check_token(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL's check-hook arguments.
    unsafe {
        let v = proposed(newval);
        if v.trim().is_empty() || aas_policy::parse_token_id(&v).is_some() {
            return true;
        }
        let shown: String = v.chars().take(60).collect();
        check_fail(
            &format!("\"{shown}\" is not an approval token id; a token id is the UUID that ai_agent_safety.request_approval_token returned."),
            Some("Example: SET ai_agent_safety.approval_token = '3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f'"),
        )
    }
}

#[pgrx::pg_guard]
// SAFETY: a GUC assign hook: PostgreSQL passes the new value and the extra its check hook set.
pub(super) unsafe extern "C-unwind" fn assign_agent_role(
    _newval: *const c_char,
    _extra: *mut c_void,
) {
    AGENT_ROLE_GENERATION.fetch_add(1, Relaxed);
}

#[pgrx::pg_guard]
// SAFETY: a GUC check hook: PostgreSQL passes a valid newval/extra pointer and its source.
pub(super) unsafe extern "C-unwind" fn check_agent_role(
    newval: *mut *mut c_char,
    extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL's check-hook arguments, passed on.
    unsafe {
        super::not_agents::allowed("ai_agent_safety.agent_role", source)
            && check_short_text(newval, extra, source)
    }
}
