//! ai_agent_safety: guard rails for AI agents inside PostgreSQL.
//!
//! `_PG_init` defines the settings and installs the hooks; everything else lives
//! in modules named for what they are:
//! - `settings`: every ai_agent_safety.* setting
//! - `identity`: is this session an agent? (cached, invalidated by syscache callbacks)
//! - `classify`: parse trees and plans -> operations
//! - `dbfacts`: facts about the current and other databases
//! - `guard`: facts -> `aas_policy::decide` -> act
//! - `approval`: token lookup and consumption (SQL API in sql/approval.sql)
//! - `credentials`: expiring agent credentials, login checks
//! - `hooks`, `auth`: thin glue
//! - `privileged`: the extension's own catalog work, safely

use pgrx::prelude::*;

pub mod approval;
pub mod auth;
pub mod classify;
pub mod credentials;
pub mod dbfacts;
pub mod guard;
pub mod hooks;
pub mod identity;
pub mod privileged;
pub mod settings;

pgrx::pg_module_magic!();

/// True when the library was loaded by shared_preload_libraries, so the hooks run
/// in every session. CREATE EXTENSION refuses to proceed otherwise.
static mut PRELOADED: bool = false;

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::define();
    unsafe {
        if !pg_sys::process_shared_preload_libraries_in_progress {
            return;
        }
        PRELOADED = true;
    }
    identity::register_invalidation();
    hooks::install();
    auth::install();
}

/// The oid of the extension's schema in this database, or InvalidOid.
pub fn own_namespace() -> pg_sys::Oid {
    unsafe { pg_sys::get_namespace_oid(c"ai_agent_safety".as_ptr(), true) }
}

/// Is the extension created in this database (its tokens table present)?
pub fn extension_created() -> bool {
    let nsp = own_namespace();
    nsp != pg_sys::InvalidOid
        && unsafe { pg_sys::get_relname_relid(c"tokens".as_ptr(), nsp) } != pg_sys::InvalidOid
}

#[pg_schema]
mod ai_agent_safety {
    use pgrx::prelude::*;

    /// Fails unless the library was preloaded: CREATE EXTENSION must not leave a
    /// database half-protected.
    #[pg_extern]
    fn assert_preloaded() {
        if !unsafe { crate::PRELOADED } {
            pgrx::error!("ai_agent_safety must be loaded through shared_preload_libraries");
        }
    }

    /// Is this role an agent (a member of the agent group, superuser or not)?
    #[pg_extern(stable, strict)]
    fn role_is_agent(role: pg_sys::Oid) -> bool {
        crate::identity::role_is_agent(role)
    }

    /// Is the calling session an agent (session_user or current_user)?
    #[pg_extern(stable)]
    fn session_is_agent() -> bool {
        crate::identity::session_is_agent()
    }
}

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!(
    "../sql/approval.sql",
    name = "approval",
    requires = [
        ai_agent_safety::assert_preloaded,
        ai_agent_safety::role_is_agent,
        ai_agent_safety::session_is_agent
    ]
);
pgrx::extension_sql_file!("../sql/credentials.sql", name = "credentials", finalize);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn settings_are_defined_with_defaults() {
        let v = Spi::get_one::<String>(
            "SELECT current_setting('ai_agent_safety.protected_operations')",
        );
        assert_eq!(v, Ok(Some("DROP, DELETE, TRUNCATE".to_string())));
        let r = Spi::get_one::<String>("SELECT current_setting('ai_agent_safety.agent_role')");
        assert_eq!(r, Ok(Some("ai_agent".to_string())));
    }

    #[pg_test]
    fn extension_creates_roles() {
        let n = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('ai_agent', 'ai_agent_approver') AND NOT rolcanlogin",
        );
        assert_eq!(n, Ok(Some(2)));
    }

    #[pg_test]
    #[should_panic(expected = "is not an operation class")]
    fn invalid_protected_operations_rejected() {
        Spi::run("SET ai_agent_safety.protected_operations = 'DROP, EXPLODE'").unwrap();
    }

    #[pg_test]
    fn superuser_is_not_an_agent() {
        assert_eq!(
            Spi::get_one::<bool>("SELECT ai_agent_safety.session_is_agent()"),
            Ok(Some(false))
        );
    }

    #[pg_test]
    fn request_returns_a_token_unqualified() {
        let t = Spi::get_one::<pgrx::Uuid>(
            "SELECT request_approval_token('delete_operation', 'database_cleanup_task_id_12345')",
        );
        assert!(matches!(t, Ok(Some(_))));
    }
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'ai_agent_safety'"]
    }
}
