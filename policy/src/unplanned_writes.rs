//! Writes a planned query asks permission for but no ModifyTable node
//! carries out: another extension's node does the work (Citus plans a
//! distributed DELETE as a "Citus Adaptive" custom scan, with no
//! ModifyTable and no result relations). The query's command type and its
//! relations' permissions still say what it changes, so the guard judges
//! those relations from them and fails closed on any plan shape.

use crate::OpClass;

/// One relation entry of a planned query, as the glue reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub relid: u32,
    /// The query asks for DELETE permission on it.
    pub delete: bool,
    /// The query asks for UPDATE permission on it.
    pub update: bool,
    /// A view: written through its base tables (which a ModifyTable node
    /// names), or through INSTEAD OF triggers (the node names the view).
    pub is_view: bool,
    /// Locked by SELECT ... FOR UPDATE/SHARE, which asks for UPDATE
    /// permission without changing a row.
    pub row_marked: bool,
}

/// The deletes and updates the entries ask for: the relations of a plan
/// that no ModifyTable node names, when another extension's node writes
/// (the glue asks only then: a plan of PostgreSQL's own says what it
/// writes in its nodes, and a rule action's plan also carries the
/// permissions of the statement it replaced). Each relation and class
/// once, in entry order.
pub fn inferred(entries: &[Entry]) -> Vec<(OpClass, u32)> {
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| !e.is_view) {
        let mut push = |c: OpClass| {
            if !out.contains(&(c, e.relid)) {
                out.push((c, e.relid));
            }
        };
        if e.delete {
            push(OpClass::Delete);
        }
        if e.update && !e.row_marked {
            push(OpClass::Update);
        }
    }
    out
}
