use crate::unplanned_writes::{inferred, Entry};
use crate::OpClass;

fn entry(relid: u32) -> Entry {
    Entry {
        relid,
        delete: false,
        update: false,
        is_view: false,
        row_marked: false,
    }
}

#[test]
fn a_delete_without_a_modify_table_is_judged_from_its_permissions() {
    // Citus's router or multi-shard DELETE: a custom scan, no result relation.
    let customers = Entry {
        delete: true,
        ..entry(16400)
    };
    assert_eq!(
        inferred(true, &[customers], &[]),
        vec![(OpClass::Delete, 16400)]
    );
    // An upsert or UPDATE the same way; MERGE asks for both.
    let orders = Entry {
        update: true,
        delete: true,
        ..entry(16500)
    };
    assert_eq!(
        inferred(true, &[orders], &[]),
        vec![(OpClass::Delete, 16500), (OpClass::Update, 16500)]
    );
}

#[test]
fn what_a_modify_table_names_and_what_only_reads_add_nothing() {
    let target = Entry {
        delete: true,
        ..entry(1)
    };
    let read = entry(2);
    assert!(inferred(true, &[target, read], &[1]).is_empty());
    // A plain SELECT, even one locking rows FOR UPDATE, changes nothing.
    let locked = Entry {
        update: true,
        row_marked: true,
        ..entry(3)
    };
    assert!(inferred(false, &[locked], &[]).is_empty());
    assert!(inferred(true, &[locked], &[]).is_empty());
}

#[test]
fn views_are_written_through_what_the_modify_table_names() {
    let view = Entry {
        delete: true,
        is_view: true,
        ..entry(7)
    };
    assert!(inferred(true, &[view], &[8]).is_empty());
}
