//! The guard's settings are not an agent's to change. `SET`, `SET LOCAL`,
//! `RESET` and `set_config()` of a restricting setting by an agent session
//! are refused in the setting's check hook, whatever GRANT SET ON PARAMETER
//! a DBA gave; ALTER SYSTEM and ALTER DATABASE ... SET are refused by the
//! guard (classify/effects.rs), ALTER ROLE ... SET by the role rule.

use pgrx::pg_sys;
use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

/// Is the current session an agent's? Given by `_PG_init` (identity sits
/// above settings, so settings cannot ask it directly).
static IS_AGENT: OnceLock<fn() -> bool> = OnceLock::new();

pub fn set_agent_test(test: fn() -> bool) {
    let _ = IS_AGENT.set(test);
}

/// For a restricting setting's check hook: false (refused, with the error
/// set for PostgreSQL to raise) when an agent session changes `name`
/// itself. Values from postgresql.conf, ALTER DATABASE and ALTER ROLE
/// (sources below PGC_S_CLIENT) are DBAs' and pass. Outside a transaction
/// (never the case for SET or set_config) nothing can be asked and the
/// change passes.
///
/// # Safety
/// Called from a GUC check hook.
pub unsafe fn allowed(name: &str, source: pg_sys::GucSource::Type) -> bool {
    if source < pg_sys::GucSource::PGC_S_CLIENT {
        return true;
    }
    // SAFETY: reads transaction state; never raises.
    if !unsafe { pg_sys::IsTransactionState() } {
        return true;
    }
    let Some(is_agent) = IS_AGENT.get() else {
        return true;
    };
    if !is_agent() {
        return true;
    }
    let d = aas_policy::settings_change_denial(
        &crate::pg::session_user_name(),
        &format!("SET {name}"),
        &[name.to_string()],
    );
    // SAFETY: called from a check hook.
    unsafe {
        crate::pg::guc_check_error(
            pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            Some(&d.message),
            &d.detail,
            Some(&d.hint),
        )
    }
}

/// Check hooks for the restricting integer and enum settings, which have
/// nothing else to check.
macro_rules! int_check {
    ($($fn_name:ident => $setting:literal,)*) => {$(
        #[pgrx::pg_guard]
        // SAFETY: a GUC check hook: PostgreSQL passes its arguments.
        pub unsafe extern "C-unwind" fn $fn_name(
            _newval: *mut c_int,
            _extra: *mut *mut c_void,
            source: pg_sys::GucSource::Type,
        ) -> bool {
            // SAFETY: called from a check hook.
            unsafe { allowed($setting, source) }
        }
    )*};
}

int_check! {
    check_token_ttl => "ai_agent_safety.token_ttl",
    check_audit_statement_max => "ai_agent_safety.audit_statement_max",
    check_mode => "ai_agent_safety.mode",
    check_audit_level => "ai_agent_safety.audit_level",
    check_audit_destination => "ai_agent_safety.audit_destination",
    check_preview_timeout => "ai_agent_safety.preview_timeout",
    check_review_ttl => "ai_agent_safety.review_ttl",
    check_recycle_retention => "ai_agent_safety.recycle_retention",
    check_recycle_max_bytes => "ai_agent_safety.recycle_max_bytes",
}
