//! Which versions of the extension's SQL objects (`pg_extension.extversion`)
//! a library serves. A library serves every SQL version from
//! [`OLDEST_SQL_SERVED`] up to its own; anything else is refused clearly,
//! never guessed at: older objects need `ALTER EXTENSION ... UPDATE`, newer
//! ones need the library they were made for.

/// The oldest SQL version this library still serves.
pub const OLDEST_SQL_SERVED: &str = "0.1.0";

/// Why a library does not serve a database's SQL objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotServed {
    /// Older than the library serves: `ALTER EXTENSION ai_agent_safety UPDATE`.
    Older { sql: String, library: String },
    /// Newer than the library: install the library they were made for.
    Newer { sql: String, library: String },
}

impl NotServed {
    /// What is wrong, in one sentence without a final period.
    pub fn reason(&self) -> String {
        match self {
            NotServed::Older { sql, library } => format!(
                "the extension's SQL objects in this database are at version {sql}, older than the loaded library {library} serves (from {OLDEST_SQL_SERVED})"
            ),
            NotServed::Newer { sql, library } => format!(
                "the extension's SQL objects in this database are at version {sql}, newer than the loaded library {library}"
            ),
        }
    }

    /// The next step for a DBA.
    pub fn hint(&self) -> String {
        match self {
            NotServed::Older { .. } => {
                "A DBA must run ALTER EXTENSION ai_agent_safety UPDATE; in this database.".into()
            }
            NotServed::Newer { sql, .. } => format!(
                "A DBA must install the ai_agent_safety library of version {sql} (or newer) and restart the server."
            ),
        }
    }
}

fn parse(v: &str) -> Option<Vec<u64>> {
    v.split('.').map(|p| p.parse().ok()).collect()
}

/// Does the library of version `library` serve SQL objects at `sql`?
/// An unreadable version is treated as older than anything.
pub fn served(library: &str, sql: &str) -> Result<(), NotServed> {
    let (lib, oldest) = (parse(library), parse(OLDEST_SQL_SERVED));
    match parse(sql) {
        Some(s) if lib.as_ref().is_some_and(|l| &s > l) => Err(NotServed::Newer {
            sql: sql.into(),
            library: library.into(),
        }),
        Some(s) if oldest.is_some_and(|o| s >= o) => Ok(()),
        _ => Err(NotServed::Older {
            sql: sql.into(),
            library: library.into(),
        }),
    }
}
