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
    assert_eq!(inferred(&[customers]), vec![(OpClass::Delete, 16400)]);
    // An upsert or UPDATE the same way; MERGE asks for both.
    let orders = Entry {
        update: true,
        delete: true,
        ..entry(16500)
    };
    assert_eq!(
        inferred(&[orders]),
        vec![(OpClass::Delete, 16500), (OpClass::Update, 16500)]
    );
}

#[test]
fn what_only_reads_or_locks_rows_adds_nothing() {
    let read = entry(2);
    assert!(inferred(&[read]).is_empty());
    // Rows locked FOR UPDATE ask for UPDATE permission and change nothing.
    let locked = Entry {
        update: true,
        row_marked: true,
        ..entry(3)
    };
    assert!(inferred(&[locked]).is_empty());
}

#[test]
fn views_are_written_through_what_the_modify_table_names() {
    let view = Entry {
        delete: true,
        is_view: true,
        ..entry(7)
    };
    assert!(inferred(&[view]).is_empty());
}
