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
pub mod audit;
pub mod auth;
pub mod classify;
pub mod credentials;
pub mod dbfacts;
pub mod guard;
pub mod hooks;
pub mod identity;
pub mod privileged;
pub mod settings;
pub mod unguarded;

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
    audit::spool::init_shmem();
    audit::writer::register_launcher();
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

    /// Records an audit event from the extension's SQL functions (token and
    /// credential events). Not executable by PUBLIC.
    #[pg_extern]
    fn _audit(
        source: &str,
        event: &str,
        decision: &str,
        operation: Option<&str>,
        object: Option<&str>,
        reason: Option<&str>,
        token: Option<pgrx::Uuid>,
    ) {
        fn known(v: &str, list: &[&'static str]) -> &'static str {
            list.iter().find(|x| **x == v).copied().unwrap_or_else(|| {
                pgrx::error!("ai_agent_safety: unknown audit vocabulary \"{v}\"")
            })
        }
        let e = crate::audit::Event {
            source: known(source, &["token", "credentials", "environment", "guard"]),
            event: known(
                event,
                &[
                    "requested",
                    "granted",
                    "denied",
                    "cancelled",
                    "issued",
                    "revoked",
                ],
            ),
            decision: known(decision, &["info", "allow", "refuse"]),
            operation: operation.unwrap_or("").to_string(),
            object: object.unwrap_or("").to_string(),
            statement: String::new(),
            reason: reason.unwrap_or("").to_string(),
            token: token.map(|t| t.to_string()).unwrap_or_default(),
        };
        crate::audit::record(e);
    }

    /// True only inside the audit writer's retention purge.
    #[pg_extern(volatile)]
    fn audit_writer_purging() -> bool {
        crate::audit::writer::purging()
    }

    /// The spool and writer counters behind ai_agent_safety.audit_stats.
    #[pg_extern(volatile)]
    fn _audit_stats() -> TableIterator<
        'static,
        (
            name!(queue_depth, i64),
            name!(events_spooled, i64),
            name!(events_written, i64),
            name!(events_dropped, i64),
            name!(writer_state, String),
            name!(writers, String),
        ),
    > {
        let here = unsafe { pg_sys::MyDatabaseId.to_u32() };
        use crate::audit::spool::{Counters, SPOOL};
        let (writers, spooled, written, dropped) = {
            let s = SPOOL.share();
            let c = &s.counters;
            (
                s.writers,
                Counters::get(&c.spooled),
                Counters::get(&c.written),
                Counters::get(&c.dropped),
            )
        };
        let state_name = |st: u8| match st {
            1 => "starting",
            2 => "running",
            3 => "waiting for CREATE EXTENSION",
            _ => "stopped",
        };
        let mine = writers
            .iter()
            .find(|w| w.dboid == here && w.state != 0)
            .map(|w| format!("{} (pid {})", state_name(w.state), w.pid))
            .unwrap_or_else(|| "idle (started on demand)".into());
        let all: Vec<String> = writers
            .iter()
            .filter(|w| w.state != 0)
            .map(|w| format!("db {}: {} pid {}", w.dboid, state_name(w.state), w.pid))
            .collect();
        TableIterator::once((
            crate::audit::spool::pending_lines(),
            spooled as i64,
            written as i64,
            dropped as i64,
            mine,
            all.join("; "),
        ))
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
pgrx::extension_sql_file!(
    "../sql/credentials.sql",
    name = "credentials",
    requires = ["approval"]
);
pgrx::extension_sql_file!("../sql/audit.sql", name = "audit", finalize);

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
