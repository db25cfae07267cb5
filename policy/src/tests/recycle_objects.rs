use crate::recycle::objects::*;

fn obj(oid: u32, class: Class, schema: u32, relation: Option<u32>) -> Dropped {
    Dropped {
        oid,
        class,
        what: format!("object {oid}"),
        schema: Some(schema),
        relation,
        temporary: false,
    }
}

#[test]
fn only_drops_of_relations_and_schemas_are_kept() {
    assert_eq!(kept_kind("table"), Some("table"));
    assert_eq!(kept_kind("materialized view"), Some("materialized view"));
    assert_eq!(kept_kind("schema"), Some("schema"));
    assert_eq!(kept_kind("function"), None);
    assert_eq!(kept_kind("index"), None);
}

#[test]
fn a_dropped_table_moves_and_its_pieces_follow_it() {
    let t = 100;
    let dropped = [
        obj(t, Class::Relation('r'), 1, None),
        obj(101, Class::Relation('i'), 1, Some(t)),
        obj(102, Class::Relation('t'), 99, Some(t)),
        obj(103, Class::Type, 1, Some(t)),
        obj(104, Class::Constraint { references: None }, 1, Some(t)),
        obj(105, Class::Trigger, 1, Some(t)),
        obj(106, Class::Policy, 1, Some(t)),
        obj(107, Class::Default, 1, Some(t)),
        obj(108, Class::Relation('S'), 1, None),
        obj(109, Class::ConstraintTrigger, 1, Some(t)),
        // The toast table's index.
        obj(110, Class::Relation('i'), 99, Some(102)),
    ];
    assert_eq!(
        plan(&dropped, None),
        vec![
            Fate::Move,
            Fate::Follows,
            Fate::Follows,
            Fate::Follows,
            Fate::Follows,
            Fate::Follows,
            Fate::Follows,
            Fate::Follows,
            Fate::Move,
            Fate::Follows,
            Fate::Follows,
        ]
    );
}

#[test]
fn cascade_moves_dependent_views_and_cuts_what_stays() {
    let t = 100;
    let live = 200;
    let dropped = [
        obj(t, Class::Relation('r'), 1, None),
        // A view of another schema on the table: moved as well.
        obj(300, Class::Relation('v'), 2, None),
        // A foreign key of a table that stays, to the dropped one.
        obj(
            301,
            Class::Constraint {
                references: Some(t),
            },
            1,
            Some(live),
        ),
        // The dropped table's own foreign key to a table that stays.
        obj(
            302,
            Class::Constraint {
                references: Some(live),
            },
            1,
            Some(t),
        ),
        // A default of a column that stays (nextval of a dropped sequence).
        obj(303, Class::Default, 1, Some(live)),
    ];
    assert_eq!(
        plan(&dropped, None),
        vec![Fate::Move, Fate::Move, Fate::Cut, Fate::Cut, Fate::Cut]
    );
}

#[test]
fn what_cannot_be_kept_refuses_the_drop() {
    let t = 100;
    let live = 200;
    // A column of a table that stays, typed by the dropped table's row type.
    let column = [
        obj(t, Class::Relation('r'), 1, None),
        obj(live, Class::Column, 1, Some(live)),
    ];
    assert_eq!(plan(&column, None), vec![Fate::Move, Fate::Refuse]);
    // A function outside what is dropped.
    let function = [
        obj(t, Class::Relation('r'), 1, None),
        obj(400, Class::Function, 3, None),
    ];
    assert_eq!(plan(&function, None)[1], Fate::Refuse);
    // A temporary table (it cannot leave its session's schema).
    let mut temp = obj(t, Class::Relation('r'), 1, None);
    temp.temporary = true;
    assert_eq!(plan(&[temp], None), vec![Fate::Refuse]);
}

#[test]
fn a_dropped_schema_is_renamed_with_everything_in_it() {
    let app = 10;
    let orders = 100;
    let customers = 101;
    let live = 200;
    let dropped = [
        obj(orders, Class::Relation('r'), app, None),
        obj(customers, Class::Relation('r'), app, None),
        obj(400, Class::Function, app, None),
        obj(
            401,
            Class::Constraint {
                references: Some(customers),
            },
            app,
            Some(orders),
        ),
        // An app table's foreign key to a table that stays: cut.
        obj(
            402,
            Class::Constraint {
                references: Some(live),
            },
            app,
            Some(orders),
        ),
        // A view of another schema on app's table: moved.
        obj(403, Class::Relation('v'), 2, None),
        // A trigger of a table that stays, running app's function: cut.
        obj(404, Class::Trigger, 2, Some(live)),
        obj(app, Class::Schema, 0, None),
    ];
    assert_eq!(
        plan(&dropped, Some(app)),
        vec![
            Fate::Follows,
            Fate::Follows,
            Fate::Follows,
            Fate::Follows,
            Fate::Cut,
            Fate::Move,
            Fate::Cut,
            Fate::Follows,
        ]
    );
}

#[test]
fn the_refusal_names_what_cannot_be_kept_and_the_notice_the_entry() {
    let d = unkeepable_denial("agent", "table", &["column c of table public.t".into()]);
    assert!(
        d.message.starts_with(
            "DROP TABLE refused: agent role \"agent\" would also remove column c of table public.t"
        ),
        "{}",
        d.message
    );
    assert!(d.message.ends_with("nothing was dropped"));
    let n = kept_objects_notice(
        "table",
        "public.t",
        7,
        "ai_agent_safety_recycle.t_7",
        86_400,
    );
    assert!(n.contains("entry 7"), "{n}");
    assert!(
        n.contains("ai_agent_safety.restore_dropped('7'::bigint)"),
        "{n}"
    );
    let g = schema_gone(7, "public.t", "app");
    assert!(
        g.hint
            .starts_with("Create the schema first: CREATE SCHEMA app;"),
        "{}",
        g.hint
    );
}

#[test]
fn kept_and_restored_names_are_unique_and_fit_postgresql() {
    assert_eq!(kept_relation_name("orders", 12, 0), "d12_0_orders");
    let long = "é".repeat(40);
    let k = kept_relation_name(&long, 4_000_000_000, 99);
    assert!(k.len() <= 63 && k.starts_with("d4000000000_99_é"), "{k}");
    assert_eq!(suffixed_name("orders_pkey", 12), "orders_pkey_r12");
    let s = suffixed_name(&"x".repeat(63), 12);
    assert_eq!(s.len(), 63);
    assert!(s.ends_with("_r12"));
    let d = name_taken(12, "table", "public.orders");
    assert!(
        d.message
            .contains("entry 12 cannot be restored as table public.orders: that name is taken now"),
        "{}",
        d.message
    );
    assert!(
        d.hint.contains("new_name => '<new name>'::text"),
        "{}",
        d.hint
    );
}

#[test]
fn kept_schemas_are_known_by_name() {
    assert!(is_kept_schema("ai_agent_safety_recycle"));
    assert!(is_kept_schema("recycled_12_app"));
    assert!(!is_kept_schema("recycled_app"));
    assert!(!is_kept_schema("recycled__app"));
    assert!(!is_kept_schema("public"));
    let d = held_denial("bot", "ai_agent_safety_recycle");
    assert!(
        d.message.contains("which the recycle bin holds"),
        "{}",
        d.message
    );
}
