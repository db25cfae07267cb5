//! Keeping a DROP's objects: cuts, renames, moves, revokes.

use super::{alter_word, grant_word, run, schema_exists, written, SCHEMA};
use crate::recycle::database::bootstrap_superuser;
use crate::recycle::entries::ensure_schema;
use crate::{pg, privileged};
use aas_policy::recycle::objects::{self as policy, Class, Dropped, Fate};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::{json, Value};

/// The SQL that removes a cut object now and the SQL that makes it again,
/// from the catalogs, while every name is still the original one. The
/// order: inheritance first (its constraints become local), then the rest.
const CUTS: &str = "
SELECT o.what, o.ord,
       CASE o.kind
         WHEN 'constraint' THEN pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', k.conrelid::pg_catalog.regclass, k.conname)
         WHEN 'default' THEN pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', ad.adrelid::pg_catalog.regclass, a.attname)
         WHEN 'trigger' THEN pg_catalog.format('DROP TRIGGER %I ON %s', tg.tgname, tg.tgrelid::pg_catalog.regclass)
         WHEN 'policy' THEN pg_catalog.format('DROP POLICY %I ON %s', po.polname, po.polrelid::pg_catalog.regclass)
         WHEN 'index' THEN pg_catalog.format('DROP INDEX %s', o.oid::pg_catalog.regclass)
         WHEN 'inherits' THEN pg_catalog.format('ALTER TABLE %s NO INHERIT %s', o.oid::pg_catalog.regclass, o.parent::pg_catalog.regclass)
         WHEN 'owned by' THEN pg_catalog.format('ALTER SEQUENCE %s OWNED BY NONE', o.oid::pg_catalog.regclass)
       END,
       CASE o.kind
         WHEN 'constraint' THEN CASE WHEN k.contype IN ('c', 'f') THEN
                pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s', k.conrelid::pg_catalog.regclass, k.conname, pg_catalog.pg_get_constraintdef(k.oid))
                OPERATOR(pg_catalog.||) CASE WHEN k.convalidated THEN ' NOT VALID' ELSE '' END END
         WHEN 'default' THEN pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s', ad.adrelid::pg_catalog.regclass, a.attname, pg_catalog.pg_get_expr(ad.adbin, ad.adrelid))
         WHEN 'trigger' THEN pg_catalog.pg_get_triggerdef(tg.oid) OPERATOR(pg_catalog.||)
                CASE tg.tgenabled WHEN 'D' THEN pg_catalog.format('; ALTER TABLE %s DISABLE TRIGGER %I', tg.tgrelid::pg_catalog.regclass, tg.tgname)
                                  WHEN 'R' THEN pg_catalog.format('; ALTER TABLE %s ENABLE REPLICA TRIGGER %I', tg.tgrelid::pg_catalog.regclass, tg.tgname)
                                  WHEN 'A' THEN pg_catalog.format('; ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', tg.tgrelid::pg_catalog.regclass, tg.tgname)
                                  ELSE '' END
         WHEN 'policy' THEN pg_catalog.format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', po.polname, po.polrelid::pg_catalog.regclass,
                CASE WHEN po.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                CASE po.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                (SELECT pg_catalog.string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r)) END, ', ')
                   FROM pg_catalog.unnest(po.polroles) AS r),
                ' USING (' OPERATOR(pg_catalog.||) pg_catalog.pg_get_expr(po.polqual, po.polrelid) OPERATOR(pg_catalog.||) ')',
                ' WITH CHECK (' OPERATOR(pg_catalog.||) pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid) OPERATOR(pg_catalog.||) ')')
         WHEN 'index' THEN pg_catalog.pg_get_indexdef(o.oid)
         WHEN 'inherits' THEN pg_catalog.format('ALTER TABLE %s INHERIT %s', o.oid::pg_catalog.regclass, o.parent::pg_catalog.regclass)
         WHEN 'owned by' THEN pg_catalog.format('ALTER SEQUENCE %s OWNED BY %s.%I', o.oid::pg_catalog.regclass, o.parent::pg_catalog.regclass,
                (SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = o.parent AND attnum = o.sub))
       END,
       -- A constraint remade NOT VALID is validated as its table's owner.
       CASE WHEN o.kind = 'constraint' AND k.contype IN ('c', 'f') AND k.convalidated
            THEN pg_catalog.format('ALTER TABLE %s VALIDATE CONSTRAINT %I', k.conrelid::pg_catalog.regclass, k.conname) END,
       CASE WHEN o.kind = 'constraint' THEN (SELECT relowner FROM pg_catalog.pg_class WHERE oid = k.conrelid) END,
       -- The table the link belongs to (that stays, or is kept).
       t.oid,
       COALESCE(t.relpersistence = 't', false),
       k.contype::text
  FROM pg_catalog.jsonb_to_recordset($1) AS o(kind text, oid oid, parent oid, sub int4, what text, ord int4)
  LEFT JOIN pg_catalog.pg_constraint k ON o.kind = 'constraint' AND k.oid = o.oid
  LEFT JOIN pg_catalog.pg_attrdef ad ON o.kind = 'default' AND ad.oid = o.oid
  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
  LEFT JOIN pg_catalog.pg_trigger tg ON o.kind = 'trigger' AND tg.oid = o.oid
  LEFT JOIN pg_catalog.pg_policy po ON o.kind = 'policy' AND po.oid = o.oid
  LEFT JOIN pg_catalog.pg_index ix ON o.kind = 'index' AND ix.indexrelid = o.oid
  LEFT JOIN pg_catalog.pg_class t ON t.oid = COALESCE(NULLIF(k.conrelid, 0), ad.adrelid, tg.tgrelid, po.polrelid, ix.indrelid,
                                                      CASE WHEN o.kind IN ('inherits', 'owned by') THEN o.oid END)
 -- A partition's or child's copy of a constraint goes with its parent's.
 WHERE NOT (o.kind = 'constraint' AND (k.conparentid <> 0 OR k.coninhcount > 0))
 ORDER BY o.ord";

/// One relation kept: moved into the recycle schema, or in the kept
/// schema (re-owned only).
struct Moved {
    oid: pg_sys::Oid,
    relkind: String,
    /// Moved or re-owned by its own ALTER (not an index, nor a sequence
    /// that goes with its table).
    top: bool,
    /// Moved into the recycle schema (not in a kept schema).
    moves: bool,
}

/// Keeps what the DROP would remove, as the plan says: the cut links
/// (removed now, remembered with what remakes them), the relations' names
/// and grants, the moves, the schema's rename. Returns the entry's
/// description and the bytes kept.
pub(super) fn keep(
    id: u32,
    kind: &str,
    schema: Option<u32>,
    dropped: &[Dropped],
    fates: &[Fate],
    stmt: *mut pg_sys::DropStmt,
) -> (Value, i64) {
    let fate_of = |oid: u32| {
        dropped
            .iter()
            .zip(fates)
            .find(|(d, _)| d.oid == oid && matches!(d.class, Class::Relation(_)))
            .map(|(_, f)| f.clone())
    };
    // Every relation kept (moved, or in the kept schema); ordered below.
    let kept_rels: Vec<(&Dropped, bool)> = dropped
        .iter()
        .zip(fates)
        .filter(|(d, f)| {
            matches!(d.class, Class::Relation(k) if matches!(k, 'r' | 'p' | 'v' | 'm' | 'S' | 'f'))
                && matches!(f, Fate::Move | Fate::Follows)
        })
        .map(|(d, f)| (d, *f == Fate::Move))
        .collect();
    privileged::run(|| {
        ensure_schema("drop");
        // The links to cut, with what remakes them.
        let mut cuts: Vec<Value> = dropped
            .iter()
            .zip(fates)
            .filter(|(_, f)| **f == Fate::Cut)
            .map(|(d, _)| {
                let (kind, ord) = match d.class {
                    Class::Constraint { .. } => ("constraint", 4),
                    Class::Default => ("default", 5),
                    Class::Trigger => ("trigger", 6),
                    Class::Policy => ("policy", 7),
                    _ => ("index", 3),
                };
                json!({"kind": kind, "oid": d.oid, "what": d.what, "ord": ord})
            })
            .collect();
        for (r, _) in &kept_rels {
            // A parent that stays: the kept table leaves its inheritance. A
            // partition of a table that stays cannot be kept whole.
            let parents = Spi::connect(|c| {
                let mut out = Vec::new();
                for row in c.select(
                    "SELECT h.inhparent, c.relispartition, pg_catalog.format('%s of %s', h.inhrelid::pg_catalog.regclass, h.inhparent::pg_catalog.regclass)
                       FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid
                      WHERE h.inhrelid = $1",
                    None,
                    &[pg_sys::Oid::from(r.oid).into()],
                )? {
                    out.push((
                        row.get::<pg_sys::Oid>(1)?.map(|o| o.to_u32()).unwrap_or(0),
                        row.get::<bool>(2)?.unwrap_or(false),
                        row.get::<String>(3)?.unwrap_or_default(),
                    ));
                }
                Ok::<_, pgrx::spi::Error>(out)
            })
            .unwrap_or_default();
            for (parent, partition, what) in parents {
                if fate_of(parent).is_some() {
                    continue;
                }
                if partition {
                    pg::refuse(policy::unkeepable_denial(
                        &pg::session_user_name(),
                        kind,
                        &[format!("partition {what}")],
                    ));
                }
                cuts.push(json!({"kind": "inherits", "oid": r.oid, "parent": parent, "what": format!("inheritance {what}"), "ord": 1}));
            }
            // A sequence owned by a column of a table that stays.
            if r.class == Class::Relation('S') {
                let owner = Spi::get_one_with_args::<String>(
                    "SELECT d.refobjid::text || ' ' || d.refobjsubid FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = $1
                        AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')",
                    &[pg_sys::Oid::from(r.oid).into()],
                )
                .ok()
                .flatten();
                if let Some((t, col)) = owner.as_deref().and_then(|s| s.split_once(' ')) {
                    let t: u32 = t.parse().unwrap_or(0);
                    if fate_of(t).is_none() {
                        cuts.push(json!({"kind": "owned by", "oid": r.oid, "parent": t, "sub": col.parse::<i32>().unwrap_or(0), "what": format!("ownership of sequence {}", pg::relation_display(pg_sys::Oid::from(r.oid))), "ord": 2}));
                    }
                }
            }
        }
        let cuts: Vec<Value> = Spi::connect(|c| {
            let mut out = Vec::new();
            for row in c.select(CUTS, None, &[pgrx::JsonB(Value::Array(cuts)).into()])? {
                out.push(json!({
                    "what": row.get::<String>(1)?,
                    "ord": row.get::<i32>(2)?,
                    "undo": row.get::<String>(3)?,
                    "redo": row.get::<String>(4)?,
                    "validate": row.get::<String>(5)?,
                    "validate_as": row.get::<pg_sys::Oid>(6)?.map(|o| o.to_u32()),
                    "target": row.get::<pg_sys::Oid>(7)?.map(|o| o.to_u32()),
                    "temporary": row.get::<bool>(8)?.unwrap_or(false),
                    "contype": row.get::<String>(9)?,
                }));
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
        .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: reading the links to cut failed: {e}"));
        // A link that could not be made again (a constraint trigger, a
        // unique or exclusion constraint of a table that stays) cannot be
        // cut: the DROP is refused.
        let unmade: Vec<String> = cuts
            .iter()
            .filter(|c| {
                (c["redo"].is_null() && c["temporary"].as_bool() != Some(true))
                    || c["undo"].is_null()
            })
            .filter_map(|c| c["what"].as_str().map(str::to_string))
            .collect();
        if !unmade.is_empty() {
            pg::refuse(policy::unkeepable_denial(
                &pg::session_user_name(),
                kind,
                &unmade,
            ));
        }
        // The relations as they are, before anything changes.
        let mut moved: Vec<Moved> = Vec::new();
        let mut relations: Vec<Value> = Vec::new();
        for (r, moves) in &kept_rels {
            let moves = *moves;
            let oid = pg_sys::Oid::from(r.oid);
            let (relkind, nsp, name, owner, linked, acl, column_acl) = Spi::connect(|c| {
                let row = c.select(
                    "SELECT c.relkind::text, n.nspname::text, c.relname::text, pg_catalog.pg_get_userbyid(c.relowner)::text,
                            EXISTS (SELECT FROM pg_catalog.pg_depend d
                                     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
                                       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')
                                       AND d.refobjsubid <> 0 AND d.refobjid = ANY ($2)),
                            CASE WHEN c.relacl IS NULL THEN NULL ELSE
                              COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                         'privilege', a.privilege_type,
                                         'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
                                         'grantable', a.is_grantable))
                                          FROM pg_catalog.aclexplode(c.relacl) a), '[]'::jsonb) END,
                            COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                        'privilege', a.privilege_type, 'column', t.attname::text,
                                        'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
                                        'grantable', a.is_grantable))
                                        FROM pg_catalog.pg_attribute t, pg_catalog.aclexplode(t.attacl) a
                                       WHERE t.attrelid = c.oid AND t.attnum > 0 AND NOT t.attisdropped AND t.attacl IS NOT NULL), '[]'::jsonb)
                       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                      WHERE c.oid = $1",
                    None,
                    &[
                        oid.into(),
                        kept_rels
                            .iter()
                            .map(|(d, _)| pg_sys::Oid::from(d.oid))
                            .collect::<Vec<_>>()
                            .into(),
                    ],
                )?;
                let row = row.first();
                Ok::<_, pgrx::spi::Error>((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default(),
                    row.get::<String>(4)?.unwrap_or_default(),
                    row.get::<bool>(5)?.unwrap_or(false),
                    row.get::<pgrx::JsonB>(6)?.map(|j| j.0).unwrap_or(Value::Null),
                    row.get::<pgrx::JsonB>(7)?.map(|j| j.0).unwrap_or(Value::Null),
                ))
            })
            .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"));
            // A sequence that goes with a kept table's SET SCHEMA and OWNER.
            let with_table = relkind == "S" && linked;
            let top = !with_table;
            relations.push(json!({"oid": r.oid, "relkind": relkind, "schema": nsp, "name": name, "owner": owner, "top": top, "moves": moves,
                                  "acl": acl, "column_acl": column_acl}));
            moved.push(Moved {
                oid,
                relkind,
                top,
                moves,
            });
        }
        // A stable order (the dependency walk's is not): what the
        // statement named first, then tables, sequences, views, by name.
        let named_list = written(stmt);
        let rank = |r: &Value| {
            let named = named_list
                .iter()
                .any(|w| Some(w.as_str()) == r["name"].as_str());
            let kind = match r["relkind"].as_str().unwrap_or("") {
                "r" | "p" | "f" => 0,
                "S" => 1,
                "m" => 2,
                _ => 3,
            };
            (
                !named,
                kind,
                r["schema"].as_str().unwrap_or("").to_string(),
                r["name"].as_str().unwrap_or("").to_string(),
            )
        };
        let mut order: Vec<usize> = (0..relations.len()).collect();
        order.sort_by_key(|&i| rank(&relations[i]));
        let relations_sorted: Vec<Value> = order.iter().map(|&i| relations[i].clone()).collect();
        let mut moved_sorted: Vec<Moved> = Vec::new();
        for &i in &order {
            let m = &moved[i];
            moved_sorted.push(Moved {
                oid: m.oid,
                relkind: m.relkind.clone(),
                top: m.top,
                moves: m.moves,
            });
        }
        let (mut relations, moved) = (relations_sorted, moved_sorted);
        // The indexes of every kept table (their names must be free in the
        // recycle schema too).
        let indexes: Vec<(pg_sys::Oid, String, String)> = Spi::connect(|c| {
            let mut out = Vec::new();
            for row in c.select(
                "SELECT i.indexrelid, n.nspname::text, x.relname::text
                   FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class x ON x.oid = i.indexrelid
                   JOIN pg_catalog.pg_namespace n ON n.oid = x.relnamespace
                  WHERE i.indrelid = ANY ($1)
                  ORDER BY n.nspname, x.relname",
                None,
                &[moved
                    .iter()
                    .filter(|m| m.moves)
                    .map(|m| m.oid)
                    .collect::<Vec<_>>()
                    .into()],
            )? {
                out.push((
                    row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default(),
                ));
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
        .unwrap_or_default();
        for (oid, nsp, name) in &indexes {
            relations.push(json!({"oid": oid.to_u32(), "relkind": "i", "schema": nsp, "name": name, "top": false, "moves": true}));
        }
        // The bytes kept, before the names change.
        let bytes = Spi::get_one_with_args::<i64>(
            "SELECT COALESCE(sum(pg_catalog.pg_total_relation_size(r)), 0)::bigint FROM pg_catalog.unnest($1::oid[]) AS r",
            &[moved.iter().map(|m| m.oid).collect::<Vec<_>>().into()],
        )
        .ok()
        .flatten()
        .unwrap_or(0);
        // Cut, in order, as the DROP would have.
        for c in &cuts {
            if let Some(undo) = c["undo"].as_str() {
                run(undo);
            }
        }
        // A temporary table's link goes with its session: not remade.
        let cuts: Vec<Value> = cuts
            .into_iter()
            .filter(|c| c["temporary"].as_bool() != Some(true))
            .collect();
        let boss = pg::quote_ident(&bootstrap_superuser());
        let mut kept_as = Vec::new();
        let mut schema_info = Value::Null;
        if let Some(nsp) = schema {
            let nsp = pg_sys::Oid::from(nsp);
            let (name, owner, acl) = Spi::connect(|c| {
                let row = c.select(
                    "SELECT nspname::text, pg_catalog.pg_get_userbyid(nspowner)::text,
                            COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                        'privilege', a.privilege_type,
                                        'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
                                        'grantable', a.is_grantable))
                                        FROM pg_catalog.aclexplode(nspacl) a WHERE a.grantee <> nspowner), '[]'::jsonb)
                       FROM pg_catalog.pg_namespace WHERE oid = $1",
                    None,
                    &[nsp.into()],
                )?;
                let row = row.first();
                Ok::<_, pgrx::spi::Error>((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<pgrx::JsonB>(3)?.map(|j| j.0).unwrap_or(Value::Null),
                ))
            })
            .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"));
            let kept = aas_policy::recycle::recycled_name(&name, id);
            if schema_exists(&kept) {
                pgrx::error!("ai_agent_safety: schema {kept} exists; nothing was dropped");
            }
            let kq = pg::quote_ident(&kept);
            run(&format!(
                "ALTER SCHEMA {} RENAME TO {kq}",
                pg::quote_ident(&name)
            ));
            run(&format!("ALTER SCHEMA {kq} OWNER TO {boss}"));
            let mut revoke = vec!["PUBLIC".to_string()];
            for a in acl.as_array().into_iter().flatten() {
                if let Some(g) = a["grantee"].as_str() {
                    if !revoke.iter().any(|r| r == g) {
                        revoke.push(g.to_string());
                    }
                }
            }
            run(&format!(
                "REVOKE ALL ON SCHEMA {kq} FROM {} CASCADE",
                revoke.join(", ")
            ));
            schema_info = json!({"oid": nsp.to_u32(), "name": name, "kept": kept, "owner": owner, "acl": acl});
            kept_as.push(kq);
        }
        // Unique names first, in place; then the moves.
        for (n, rel) in relations.iter_mut().enumerate() {
            if rel["moves"].as_bool() != Some(true) {
                continue;
            }
            let oid = pg_sys::Oid::from(rel["oid"].as_u64().unwrap_or(0) as u32);
            let kept = policy::kept_relation_name(rel["name"].as_str().unwrap_or(""), id, n);
            run(&format!(
                "ALTER {} {} RENAME TO {}",
                alter_word(rel["relkind"].as_str().unwrap_or("r")),
                pg::relation_display(oid),
                pg::quote_ident(&kept)
            ));
            rel["kept"] = json!(kept);
        }
        for m in moved.iter().filter(|m| m.top && m.moves) {
            run(&format!(
                "ALTER {} {} SET SCHEMA {SCHEMA}",
                alter_word(&m.relkind),
                pg::relation_display(m.oid)
            ));
            kept_as.push(pg::relation_display(m.oid));
        }
        let kept_as = kept_as.join(", ");
        // Out of everyone's reach, owners' too: no grant is left (a
        // sequence is reached by oid, statistics by column privilege). The
        // owners stay (the bootstrap superuser would run an index's
        // expressions, the agent's functions, when the table is analyzed).
        for r in &relations {
            let relkind = r["relkind"].as_str().unwrap_or("r");
            if relkind == "i" {
                continue;
            }
            let oid = pg_sys::Oid::from(r["oid"].as_u64().unwrap_or(0) as u32);
            let mut from = vec![
                "PUBLIC".to_string(),
                pg::quote_ident(r["owner"].as_str().unwrap_or("")),
            ];
            for a in r["acl"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(r["column_acl"].as_array().into_iter().flatten())
            {
                if let Some(g) = a["grantee"].as_str() {
                    if !from.iter().any(|f| f == g) {
                        from.push(g.to_string());
                    }
                }
            }
            run(&format!(
                "REVOKE ALL ON {} {} FROM {} CASCADE",
                grant_word(relkind),
                pg::relation_display(oid),
                from.join(", ")
            ));
        }
        let entry = json!({
            "kept_as": kept_as,
            "schema": schema_info,
            "relations": relations,
            "cuts": cuts,
        });
        (entry, bytes)
    })
}
