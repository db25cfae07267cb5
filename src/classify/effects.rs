//! Destruction that is not spelled DROP, DELETE or TRUNCATE: statements
//! classified by what happens to the data (see the README's table).
//!
//! - ALTER: `ALTER SEQUENCE ... RESTART | INCREMENT | CYCLE | MAXVALUE |
//!   MINVALUE | AS` (ids are handed out again, or run out), `CREATE` or
//!   `ALTER POLICY` on a table with row level security on (rows hidden),
//!   `ALTER TYPE ... RENAME VALUE` (stored values change meaning),
//!   `CREATE RULE ... DO INSTEAD` and `CREATE OR REPLACE RULE` (future
//!   writes are lost or redirected);
//! - DROP: `CREATE OR REPLACE VIEW|FUNCTION|PROCEDURE` over an existing one
//!   (the old definition is gone, a DROP in all but name), and `ALTER
//!   DATABASE x ALLOW_CONNECTIONS false | CONNECTION LIMIT 0` or `RENAME`
//!   (the database is out of reach, as if dropped; judged by x's settings),
//!   `ALTER DATABASE x SET statement_timeout | lock_timeout |
//!   idle_session_timeout | idle_in_transaction_session_timeout` (likewise),
//!   `CREATE OR REPLACE TRIGGER` over an existing one;
//! - TRUNCATE: `REFRESH MATERIALIZED VIEW ... WITH NO DATA` (it empties it);
//! - a write: `COPY ... FROM` (for the task-environment rule and
//!   `audit_level = writes`).
//!
//! The ALTER TABLE forms (SET UNLOGGED, NO INHERIT, ENABLE/FORCE ROW LEVEL
//! SECURITY) and RENAME by what the relation really is are in `utility`.

use super::{named, relation_ref};
use crate::pg::{cstr, existing_relation, list_ptrs, quote_ident};
use aas_policy::{OpClass, Operation, SideDoor, Statement};
use pg_sys::NodeTag::*;
use pgrx::pg_sys;
use std::ffi::CStr;

/// Does this statement act on a database as a whole (decided by that
/// database's own settings, whatever this one's say)?
///
/// # Safety
/// `node` is a valid utility statement.
pub unsafe fn acts_on_database(node: *mut pg_sys::Node) -> bool {
    match (*node).type_ {
        T_DropdbStmt | T_AlterDatabaseStmt | T_AlterDatabaseSetStmt => true,
        T_RenameStmt => {
            (*(node as *const pg_sys::RenameStmt)).renameType == pg_sys::ObjectType::OBJECT_DATABASE
        }
        T_AlterOwnerStmt => {
            (*(node as *const pg_sys::AlterOwnerStmt)).objectType
                == pg_sys::ObjectType::OBJECT_DATABASE
        }
        _ => false,
    }
}

fn op(class: OpClass, verb: String, object: aas_policy::ObjectRef) -> Operation {
    Operation {
        class,
        verb,
        object,
        target_database: None,
        is_write: true,
    }
}

/// An operation on a whole database, decided by its own settings.
fn database_op(class: OpClass, verb: &str, name: &str) -> Operation {
    let c = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: catalog lookup with missing_ok = true.
    let oid = unsafe { pg_sys::get_database_oid(c.as_ptr(), true) };
    Operation {
        class,
        verb: verb.to_string(),
        object: named(pg_sys::DatabaseRelationId, oid, quote_ident(name)),
        target_database: Some(name.to_string()),
        is_write: true,
    }
}

/// The DefElem of a statement's options with this name.
///
/// # Safety
/// `options` is NULL or a valid List of DefElem.
pub(super) unsafe fn option(
    options: *mut pg_sys::List,
    name: &CStr,
) -> Option<*mut pg_sys::DefElem> {
    list_ptrs(options)
        .into_iter()
        .map(|p| p as *mut pg_sys::DefElem)
        .find(|d| !(**d).defname.is_null() && CStr::from_ptr((**d).defname) == name)
}

/// Timeouts that, set small for a database, end every statement or session.
const DATABASE_TIMEOUTS: [&str; 4] = [
    "statement_timeout",
    "lock_timeout",
    "idle_session_timeout",
    "idle_in_transaction_session_timeout",
];

/// Is row level security enabled on this table?
///
/// # Safety
/// Inside a transaction.
unsafe fn row_security_on(rel: pg_sys::Oid) -> bool {
    let tup = pg_sys::SearchSysCache1(
        pg_sys::SysCacheIdentifier::RELOID as i32,
        pg_sys::Datum::from(rel),
    );
    if tup.is_null() {
        return false;
    }
    let on = (*(pg_sys::GETSTRUCT(tup) as *const pg_sys::FormData_pg_class)).relrowsecurity;
    pg_sys::ReleaseSysCache(tup);
    on
}

/// The function a CREATE OR REPLACE FUNCTION would replace, if it exists:
/// looked up by name and input argument types.
///
/// # Safety
/// `s` is a valid CreateFunctionStmt, inside a transaction.
unsafe fn replaced_function(s: &pg_sys::CreateFunctionStmt) -> Option<pg_sys::Oid> {
    use pg_sys::FunctionParameterMode::*;
    let mut types = Vec::new();
    for p in list_ptrs(s.parameters) {
        let p = &*(p as *const pg_sys::FunctionParameter);
        // A function's signature is its input arguments; a procedure's
        // includes its OUT arguments too (PostgreSQL 14 and later).
        if p.mode == FUNC_PARAM_TABLE || (p.mode == FUNC_PARAM_OUT && !s.is_procedure) {
            continue;
        }
        let t = pg_sys::LookupTypeNameOid(std::ptr::null_mut(), p.argType, true);
        if t == pg_sys::InvalidOid {
            return None;
        }
        types.push(t);
    }
    if !s.is_procedure {
        let oid = pg_sys::LookupFuncName(s.funcname, types.len() as i32, types.as_ptr(), true);
        return (oid != pg_sys::InvalidOid).then_some(oid);
    }
    // A procedure is found by all its argument types, OUT ones included
    // (its identity since PostgreSQL 14; proallargtypes holds them when any
    // is not IN), in the schema it would be created in.
    let mut name: *mut std::ffi::c_char = std::ptr::null_mut();
    let nsp = pg_sys::QualifiedNameGetCreationNamespace(s.funcname, &mut name);
    let args = format!(
        "{{{}}}",
        types
            .iter()
            .map(|t| t.to_u32().to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let name = cstr(name);
    crate::privileged::run(|| {
        pgrx::spi::Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT oid FROM pg_catalog.pg_proc
              WHERE proname = $1 AND pronamespace = $2 AND prokind = 'p'
                AND COALESCE(proallargtypes, proargtypes::pg_catalog.oid[]) = $3::pg_catalog.oid[]",
            &[name.into(), nsp.into(), args.into()],
        )
    })
    .ok()
    .flatten()
}

/// Do these generic options (a foreign table's, as file_fdw reads them)
/// name a program to run or a server file to read?
///
/// # Safety
/// `options` is NULL or a List of DefElem.
unsafe fn reads_outside(options: *mut pg_sys::List) -> bool {
    list_ptrs(options).into_iter().any(|d| {
        let name = cstr((*(d as *const pg_sys::DefElem)).defname);
        name.eq_ignore_ascii_case("program") || name.eq_ignore_ascii_case("filename")
    })
}

/// The setting a statement sets for others (ALTER SYSTEM, ALTER DATABASE
/// ... SET), by name (`ALL` for RESET ALL), if it is one of the guard's.
///
/// # Safety
/// `node` is a valid utility statement.
unsafe fn guard_setting_changed(node: *mut pg_sys::Node) -> Option<String> {
    let sets: Vec<*mut pg_sys::VariableSetStmt> = match (*node).type_ {
        T_AlterSystemStmt => vec![(*(node as *const pg_sys::AlterSystemStmt)).setstmt],
        T_AlterDatabaseSetStmt => vec![(*(node as *const pg_sys::AlterDatabaseSetStmt)).setstmt],
        // A function's SET clause applies for every call, whoever calls it,
        // before anything of the call can be judged.
        T_CreateFunctionStmt => set_clauses((*(node as *const pg_sys::CreateFunctionStmt)).options),
        T_AlterFunctionStmt => set_clauses((*(node as *const pg_sys::AlterFunctionStmt)).actions),
        _ => return None,
    };
    sets.into_iter().filter(|s| !s.is_null()).find_map(|set| {
        let name = if (*set).name.is_null() {
            "ALL".to_string()
        } else {
            cstr((*set).name)
        };
        aas_policy::is_guard_setting(&name).then_some(name)
    })
}

/// The `SET name = value` clauses among a function's options.
///
/// # Safety
/// `options` is NULL or a valid List of DefElem.
unsafe fn set_clauses(options: *mut pg_sys::List) -> Vec<*mut pg_sys::VariableSetStmt> {
    list_ptrs(options)
        .into_iter()
        .map(|d| &*(d as *const pg_sys::DefElem))
        .filter(|d| CStr::from_ptr(d.defname) == c"set")
        .map(|d| d.arg as *mut pg_sys::VariableSetStmt)
        .collect()
}

/// The door out of the guard's reach a statement opens, if any: a program
/// or a server file (COPY), a prepared transaction, a change to the
/// extension itself or to its own tables.
///
/// # Safety
/// `node` is a valid utility statement, inside a transaction.
pub unsafe fn side_door(node: *mut pg_sys::Node) -> Option<(&'static str, SideDoor)> {
    match (*node).type_ {
        T_CopyStmt => {
            let s = &*(node as *const pg_sys::CopyStmt);
            match (s.is_program, s.filename.is_null(), s.is_from) {
                (true, _, true) => Some(("COPY ... FROM PROGRAM", SideDoor::Program)),
                (true, _, false) => Some(("COPY ... TO PROGRAM", SideDoor::Program)),
                (false, false, true) => Some(("COPY ... FROM a server file", SideDoor::ServerFile)),
                (false, false, false) => Some(("COPY ... TO a server file", SideDoor::ServerFile)),
                _ => None,
            }
        }
        T_TransactionStmt
            if (*(node as *const pg_sys::TransactionStmt)).kind
                == pg_sys::TransactionStmtKind::TRANS_STMT_PREPARE =>
        {
            Some(("PREPARE TRANSACTION", SideDoor::PreparedTransaction))
        }
        T_PrepareStmt
            if crate::agent_code::running().is_some()
                && !crate::identity::session_user_is_agent() =>
        {
            Some(("PREPARE", SideDoor::PreparedStatement))
        }
        T_CreatePublicationStmt => Some(("CREATE PUBLICATION", SideDoor::Replication)),
        T_AlterPublicationStmt => Some(("ALTER PUBLICATION", SideDoor::Replication)),
        T_RenameStmt
            if (*(node as *const pg_sys::RenameStmt)).renameType
                == pg_sys::ObjectType::OBJECT_SUBSCRIPTION =>
        {
            Some(("ALTER SUBSCRIPTION ... RENAME TO", SideDoor::Subscription))
        }
        T_CreateForeignTableStmt
            if reads_outside((*(node as *const pg_sys::CreateForeignTableStmt)).options) =>
        {
            Some((
                "CREATE FOREIGN TABLE with a program or a server file",
                SideDoor::Program,
            ))
        }
        T_AlterTableStmt
            if list_ptrs((*(node as *const pg_sys::AlterTableStmt)).cmds)
                .into_iter()
                .any(|c| {
                    let c = &*(c as *const pg_sys::AlterTableCmd);
                    c.subtype == pg_sys::AlterTableType::AT_GenericOptions
                        && reads_outside(c.def as *mut pg_sys::List)
                }) =>
        {
            Some((
                "ALTER FOREIGN TABLE ... OPTIONS with a program or a server file",
                SideDoor::Program,
            ))
        }
        T_CreateSubscriptionStmt => Some(("CREATE SUBSCRIPTION", SideDoor::Subscription)),
        T_AlterSubscriptionStmt => Some(("ALTER SUBSCRIPTION", SideDoor::Subscription)),
        T_AlterOwnerStmt => match (*(node as *const pg_sys::AlterOwnerStmt)).objectType {
            pg_sys::ObjectType::OBJECT_SUBSCRIPTION => {
                Some(("ALTER SUBSCRIPTION ... OWNER TO", SideDoor::Subscription))
            }
            pg_sys::ObjectType::OBJECT_PUBLICATION => {
                Some(("ALTER PUBLICATION ... OWNER TO", SideDoor::Replication))
            }
            _ => None,
        },
        // The extension and its own tables: an agent's own session holds no
        // privilege on them (PostgreSQL refuses); its code in a
        // superuser's session would.
        _ if crate::identity::session_user_is_agent() => None,
        T_AlterExtensionStmt | T_AlterExtensionContentsStmt => {
            let name = if (*node).type_ == T_AlterExtensionStmt {
                (*(node as *const pg_sys::AlterExtensionStmt)).extname
            } else {
                (*(node as *const pg_sys::AlterExtensionContentsStmt)).extname
            };
            (cstr(name) == "ai_agent_safety")
                .then_some(("ALTER EXTENSION ai_agent_safety", SideDoor::GuardState))
        }
        T_DropStmt => {
            let s = &*(node as *const pg_sys::DropStmt);
            let names_it = s.removeType == pg_sys::ObjectType::OBJECT_EXTENSION
                && list_ptrs(s.objects)
                    .into_iter()
                    .any(|o| cstr((*(o as *const pg_sys::String)).sval) == "ai_agent_safety");
            names_it.then_some(("DROP EXTENSION ai_agent_safety", SideDoor::GuardState))
        }
        _ => {
            // DDL on the extension's own tables (ALTER TABLE ... DISABLE
            // TRIGGER on its audit log, say).
            if (*node).type_ == T_TruncateStmt {
                let s = &*(node as *const pg_sys::TruncateStmt);
                let own = list_ptrs(s.relations).into_iter().any(|rv| {
                    existing_relation(rv as *const pg_sys::RangeVar)
                        .is_some_and(super::is_own_relation)
                });
                return own.then_some((
                    "TRUNCATE of the extension's own tables",
                    SideDoor::GuardState,
                ));
            }
            let rv = match (*node).type_ {
                T_AlterTableStmt => (*(node as *const pg_sys::AlterTableStmt)).relation,
                T_CreateTrigStmt => (*(node as *const pg_sys::CreateTrigStmt)).relation,
                T_RuleStmt => (*(node as *const pg_sys::RuleStmt)).relation,
                T_CreatePolicyStmt => (*(node as *const pg_sys::CreatePolicyStmt)).table,
                T_AlterPolicyStmt => (*(node as *const pg_sys::AlterPolicyStmt)).table,
                T_IndexStmt => (*(node as *const pg_sys::IndexStmt)).relation,
                _ => return None,
            };
            existing_relation(rv)
                .filter(|r| super::is_own_relation(*r))
                .map(|_| ("DDL on the extension's own tables", SideDoor::GuardState))
        }
    }
}

/// Does this statement change one of the guard's settings for others?
///
/// # Safety
/// `node` is a valid utility statement.
pub unsafe fn changes_guard_settings(node: *mut pg_sys::Node) -> bool {
    guard_setting_changed(node).is_some()
}

/// Classifies the statements this module knows; false for any other.
///
/// # Safety
/// `node` is a valid utility statement, inside a transaction.
pub unsafe fn classify(node: *mut pg_sys::Node, out: &mut Statement) -> bool {
    if let Some(name) = guard_setting_changed(node) {
        out.verb = match (*node).type_ {
            T_AlterSystemStmt => "ALTER SYSTEM",
            T_CreateFunctionStmt => "CREATE FUNCTION ... SET",
            T_AlterFunctionStmt => "ALTER FUNCTION ... SET",
            _ => "ALTER DATABASE ... SET",
        };
        out.changes_settings.push(name);
        return true;
    }
    match (*node).type_ {
        T_AlterSeqStmt => {
            // Ids handed out again (RESTART, a smaller INCREMENT or a
            // CYCLE), or none left (MAXVALUE, MINVALUE, AS a smaller type).
            let s = &*(node as *const pg_sys::AlterSeqStmt);
            let changed = [
                (c"restart", "RESTART"),
                (c"increment", "INCREMENT"),
                (c"cycle", "CYCLE"),
                (c"maxvalue", "MAXVALUE"),
                (c"minvalue", "MINVALUE"),
                (c"as", "AS"),
            ]
            .into_iter()
            .find(|(name, _)| option(s.options, name).is_some());
            if let (Some((_, word)), Some(oid)) = (changed, existing_relation(s.sequence)) {
                out.ops.push(op(
                    OpClass::Alter,
                    format!("ALTER SEQUENCE ... {word}"),
                    relation_ref(oid),
                ));
            }
        }
        T_CreateTrigStmt => {
            // Over an existing trigger, the old one is gone.
            let s = &*(node as *const pg_sys::CreateTrigStmt);
            if let (true, Some(rel)) = (s.replace, existing_relation(s.relation)) {
                if pg_sys::get_trigger_oid(rel, s.trigname, true) != pg_sys::InvalidOid {
                    out.ops.push(op(
                        OpClass::Drop,
                        format!(
                            "CREATE OR REPLACE TRIGGER {} ON",
                            quote_ident(&cstr(s.trigname))
                        ),
                        relation_ref(rel),
                    ));
                }
            }
        }
        T_CreatePolicyStmt | T_AlterPolicyStmt => {
            // With row level security on, a policy decides which rows anyone
            // but the owner sees: a restrictive one can hide them all.
            let (table, verb) = if (*node).type_ == T_CreatePolicyStmt {
                (
                    (*(node as *const pg_sys::CreatePolicyStmt)).table,
                    "CREATE POLICY ON",
                )
            } else {
                (
                    (*(node as *const pg_sys::AlterPolicyStmt)).table,
                    "ALTER POLICY ON",
                )
            };
            if let Some(rel) = existing_relation(table).filter(|r| row_security_on(*r)) {
                out.ops
                    .push(op(OpClass::Alter, verb.into(), relation_ref(rel)));
            }
        }
        T_AlterDatabaseSetStmt => {
            // A timeout small enough makes the database unusable, as if
            // dropped: decided by that database's settings.
            let s = &*(node as *const pg_sys::AlterDatabaseSetStmt);
            let set = s.setstmt;
            if set.is_null()
                || (*set).kind != pg_sys::VariableSetKind::VAR_SET_VALUE
                || (*set).name.is_null()
            {
                return false;
            }
            let name = cstr((*set).name);
            if !DATABASE_TIMEOUTS.contains(&name.as_str()) {
                return false;
            }
            out.ops.push(database_op(
                OpClass::Drop,
                &format!("ALTER DATABASE ... SET {name}"),
                &cstr(s.dbname),
            ));
        }
        T_AlterEnumStmt => {
            let s = &*(node as *const pg_sys::AlterEnumStmt);
            if !s.oldVal.is_null() {
                let name = cstr(pg_sys::NameListToString(s.typeName));
                let tn = pg_sys::makeTypeNameFromNameList(s.typeName);
                let oid = pg_sys::LookupTypeNameOid(std::ptr::null_mut(), tn, true);
                out.ops.push(op(
                    OpClass::Alter,
                    format!(
                        "ALTER TYPE ... RENAME VALUE '{}' TO '{}'",
                        cstr(s.oldVal).replace('\'', "''"),
                        cstr(s.newVal).replace('\'', "''")
                    ),
                    named(pg_sys::TypeRelationId, oid, name),
                ));
            }
        }
        T_RuleStmt => {
            let s = &*(node as *const pg_sys::RuleStmt);
            if s.instead || s.replace {
                if let Some(oid) = existing_relation(s.relation) {
                    let verb = match (s.replace, s.instead) {
                        (true, true) => "CREATE OR REPLACE RULE DO INSTEAD ON",
                        (true, false) => "CREATE OR REPLACE RULE ON",
                        _ => "CREATE RULE DO INSTEAD ON",
                    };
                    out.ops
                        .push(op(OpClass::Alter, verb.into(), relation_ref(oid)));
                }
            }
        }
        T_ViewStmt => {
            let s = &*(node as *const pg_sys::ViewStmt);
            if s.replace {
                if let Some(oid) = existing_relation(s.view) {
                    out.ops.push(op(
                        OpClass::Drop,
                        "CREATE OR REPLACE VIEW".into(),
                        relation_ref(oid),
                    ));
                }
            }
        }
        T_CreateFunctionStmt => {
            let s = &*(node as *const pg_sys::CreateFunctionStmt);
            if s.replace {
                if let Some(oid) = replaced_function(s) {
                    let kind = if s.is_procedure {
                        "PROCEDURE"
                    } else {
                        "FUNCTION"
                    };
                    let display = cstr(pg_sys::format_procedure_qualified(oid));
                    out.ops.push(op(
                        OpClass::Drop,
                        format!("CREATE OR REPLACE {kind}"),
                        named(pg_sys::ProcedureRelationId, oid, display),
                    ));
                }
            }
        }
        T_RefreshMatViewStmt => {
            let s = &*(node as *const pg_sys::RefreshMatViewStmt);
            if s.skipData {
                if let Some(oid) = existing_relation(s.relation) {
                    out.ops.push(op(
                        OpClass::Truncate,
                        "REFRESH MATERIALIZED VIEW ... WITH NO DATA".into(),
                        relation_ref(oid),
                    ));
                }
            }
        }
        T_CopyStmt => {
            let s = &*(node as *const pg_sys::CopyStmt);
            if s.is_from {
                out.writes = true;
                out.verb = "COPY ... FROM";
            }
        }
        T_AlterDatabaseStmt => {
            let s = &*(node as *const pg_sys::AlterDatabaseStmt);
            let name = cstr(s.dbname);
            if let Some(d) = option(s.options, c"allow_connections") {
                if !pg_sys::defGetBoolean(d) {
                    out.ops.push(database_op(
                        OpClass::Drop,
                        "ALTER DATABASE ... ALLOW_CONNECTIONS false",
                        &name,
                    ));
                }
            }
            if let Some(d) = option(s.options, c"connection_limit") {
                if pg_sys::defGetInt32(d) == 0 {
                    out.ops.push(database_op(
                        OpClass::Drop,
                        "ALTER DATABASE ... CONNECTION LIMIT 0",
                        &name,
                    ));
                }
            }
        }
        T_RenameStmt => {
            let s = &*(node as *const pg_sys::RenameStmt);
            if s.renameType != pg_sys::ObjectType::OBJECT_DATABASE {
                return false;
            }
            out.ops.push(database_op(
                OpClass::Drop,
                &format!(
                    "ALTER DATABASE ... RENAME TO {}",
                    quote_ident(&cstr(s.newname))
                ),
                &cstr(s.subname),
            ));
        }
        T_AlterOwnerStmt => {
            let s = &*(node as *const pg_sys::AlterOwnerStmt);
            if s.objectType != pg_sys::ObjectType::OBJECT_DATABASE {
                return false;
            }
            let name = cstr((*(s.object as *const pg_sys::String)).sval);
            out.ops.push(database_op(
                OpClass::Alter,
                "ALTER DATABASE ... OWNER TO",
                &name,
            ));
        }
        _ => return false,
    }
    true
}
