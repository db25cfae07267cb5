//! ai_agent_safety: guard rails for AI agents inside PostgreSQL.
//!
//! `_PG_init` defines the settings and installs the hooks; everything else lives
//! in modules named for what they are, in layers that each know only what is
//! below them (the README's Architecture section draws them):
//! - glue: `hooks` (utility, executor, auth), `sql_api`, the audit workers;
//! - act: `guard` (refuse, consume, end sessions), `audit` (record events);
//! - facts: `identity` (is this an agent?), `classify` (what a statement
//!   does), `dbfacts`, `credentials`, `approval` (token rows);
//! - `settings`: every ai_agent_safety.* setting, typed;
//! - `pg`, `privileged`, `unguarded`: reading PostgreSQL values, running the
//!   extension's own queries safely, calling PostgreSQL without pgrx's guard;
//! - the pure policy crate `aas_policy` decides.

use pgrx::prelude::*;

pub mod agent_code;
pub mod agent_plan;
pub mod approval;
pub mod audit;
pub mod classify;
pub mod credentials;
pub mod dbfacts;
pub mod dry_run;
pub mod expiry;
pub mod guard;
pub mod hooks;
pub mod identity;
pub mod pg;
pub mod port;
pub mod prepared;
pub mod presented;
pub mod privileged;
pub mod range_table;
pub mod recycle;
pub mod renames;
pub mod review;
pub mod row_cap;
pub mod row_count;
pub mod settings;
pub mod sql_api;
pub mod statement_form;
pub mod unguarded;
pub mod workers;

pgrx::pg_module_magic!();

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::define(Some(hooks::auth::show_agent_session));
    settings::set_agent_test(agent_code::session_or_code_is_agent);
    // SAFETY: reads a postmaster variable during library load.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    sql_api::mark_preloaded();
    // No error raised through Rust frames may carry a Rust backtrace to a
    // client, whatever RUST_BACKTRACE says in the server's environment:
    // pgrx captures one for every error when it is set. The standard
    // library reads RUST_LIB_BACKTRACE first; backends inherit it.
    // SAFETY: the postmaster is single-threaded while it loads libraries.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    identity::register_invalidation();
    agent_code::register_invalidation();
    agent_plan::register_invalidation();
    pg::register_invalidation();
    pg::relation_names::register_invalidation();
    audit::spool::init_shmem();
    // Before any backend runs: a spool copied with the data directory from
    // another server is that server's (see set_aside_a_copied_spool).
    audit::spool::set_aside_a_copied_spool_at_start();
    audit::launcher::register();
    hooks::install();
}

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!(
    "../sql/approval.sql",
    name = "approval",
    requires = [
        sql_api::ai_agent_safety::assert_preloaded,
        sql_api::ai_agent_safety::role_is_agent,
        sql_api::ai_agent_safety::session_is_agent,
        sql_api::ai_agent_safety::_statement_form,
        sql_api::ai_agent_safety::_statement_facts,
        sql_api::ai_agent_safety::_preview,
        sql_api::ai_agent_safety::_take_preview,
        sql_api::ai_agent_safety::_statement_reach
    ]
);
pgrx::extension_sql_file!(
    "../sql/credentials.sql",
    name = "credentials",
    requires = ["approval", sql_api::ai_agent_safety::_roll_back_prepared]
);
pgrx::extension_sql_file!(
    "../sql/review.sql",
    name = "review",
    requires = [
        "approval",
        sql_api::ai_agent_safety::begin_review,
        sql_api::ai_agent_safety::_reviews
    ]
);
pgrx::extension_sql_file!(
    "../sql/recycle.sql",
    name = "recycle",
    requires = [
        "approval",
        sql_api::ai_agent_safety::_recycle_bin,
        sql_api::ai_agent_safety::_recycle_bin_readable,
        sql_api::ai_agent_safety::restore_dropped,
        sql_api::ai_agent_safety::purge_dropped
    ]
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

    /// A background worker's step that fails is rolled back alone: the
    /// transaction (and the worker) go on.
    #[pg_test]
    fn a_failed_step_in_a_subtransaction_is_rolled_back_and_the_transaction_goes_on() {
        Spi::run("CREATE TEMP TABLE steps (x int)").unwrap();
        let failed = crate::pg::in_subtransaction("a test step", || {
            Spi::run("INSERT INTO steps VALUES (1)").unwrap();
            Spi::run("SELECT 1 / 0").unwrap();
        });
        assert!(failed.is_none());
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM steps"),
            Ok(Some(0))
        );
        let done = crate::pg::in_subtransaction("a test step", || {
            Spi::run("INSERT INTO steps VALUES (2)").unwrap();
            7
        });
        assert_eq!(done, Some(7));
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM steps"),
            Ok(Some(1))
        );
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
