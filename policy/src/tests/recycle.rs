use crate::recycle::*;

#[test]
fn only_agents_statements_are_kept_and_only_while_the_bin_is_on() {
    assert!(keeps(true, 7 * 24 * 3600));
    assert!(!keeps(true, 0));
    assert!(!keeps(false, 7 * 24 * 3600));
}

#[test]
fn a_recycled_name_is_unique_by_entry_and_fits_postgresql() {
    assert_eq!(
        recycled_name("production", 16384),
        "recycled_16384_production"
    );
    let long = "é".repeat(40);
    let n = recycled_name(&long, 4_000_000_000);
    assert!(n.len() <= 63, "{n}");
    assert!(n.starts_with("recycled_4000000000_é"));
    // Cut at a character boundary.
    assert!(n.is_char_boundary(n.len()));
}

#[test]
fn an_entry_is_held_only_by_the_closed_database_under_its_recycled_name() {
    assert!(is_held("recycled_5_prod", "recycled_5_prod", false));
    // Restored (renamed back), reopened, or a rolled-back rename.
    assert!(!is_held("prod", "recycled_5_prod", false));
    assert!(!is_held("recycled_5_prod", "recycled_5_prod", true));
}

#[test]
fn expiry_is_retention_after_the_keep() {
    let at = 1_000_000;
    assert_eq!(expires_at(at, 60), 61_000_000);
    assert!(!expired(expires_at(at, 60), 60_999_999));
    assert!(expired(expires_at(at, 60), 61_000_000));
    assert_eq!(expires_at(i64::MAX - 1, 60), i64::MAX);
}

#[test]
fn a_restore_takes_the_original_name_unless_it_is_taken() {
    assert_eq!(restore_name("prod", None, |_| false, 7).unwrap(), "prod");
    assert_eq!(
        restore_name("prod", Some("prod_old"), |n| n == "prod", 7).unwrap(),
        "prod_old"
    );
    let d = restore_name("prod", None, |n| n == "prod", 7).unwrap_err();
    assert!(
        d.message
            .contains("entry 7 cannot be restored as \"prod\": that name is taken now"),
        "{}",
        d.message
    );
    assert!(
        d.hint.contains(
            "ai_agent_safety.restore_dropped('7'::bigint, new_name => 'prod_restored'::text)"
        ),
        "{}",
        d.hint
    );
    let d = restore_name("prod", Some(&"x".repeat(64)), |_| false, 7).unwrap_err();
    assert!(
        d.message.contains("a name is 1 to 63 bytes"),
        "{}",
        d.message
    );
}

#[test]
fn the_agent_is_told_where_its_drop_went_and_how_it_comes_back() {
    let n = kept_notice(
        "database",
        "production",
        1,
        "recycled_1_production",
        7 * 86_400,
    );
    assert_eq!(
        n,
        "database production was moved to the recycle bin as entry 1 (recycled_1_production) for 7 days; an approver can restore it with SELECT ai_agent_safety.restore_dropped('1'::bigint)"
    );
    assert_eq!(
        kept_rows_notice("public.orders", Some(10), 2, 3600),
        "the 10 rows of public.orders were kept in the recycle bin as entry 2 for 1 hour; an approver can put them back with SELECT ai_agent_safety.restore_dropped('2'::bigint)"
    );
    assert_eq!(
        kept_rows_notice("public.orders", None, 2, 3600),
        "the rows of public.orders were kept in the recycle bin as entry 2 for 1 hour; an approver can put them back with SELECT ai_agent_safety.restore_dropped('2'::bigint)"
    );
    assert_eq!(
        kept_old_rows_notice("delete", "public.orders, public.lines", 3, 4, 86_400),
        "the 3 deleted rows of public.orders, public.lines were kept in the recycle bin as entry 4 for 1 day; an approver can put them back with SELECT ai_agent_safety.restore_dropped('4'::bigint)"
    );
    assert_eq!(
        kept_old_rows_notice("update", "public.orders", 1, 5, 60),
        "the old versions of the 1 updated rows of public.orders were kept in the recycle bin as entry 5 for 1 minute; an approver can put them back with SELECT ai_agent_safety.restore_dropped('5'::bigint)"
    );
    assert_eq!(duration_text(3600), "1 hour");
    assert_eq!(duration_text(90), "90 seconds");
    assert_eq!(duration_text(120), "2 minutes");
    let d = agent_denial("bot", "SELECT ai_agent_safety.restore_dropped");
    assert!(d
        .message
        .contains("agent role \"bot\" may not read, restore or purge the recycle bin"));
}

#[test]
fn the_budget_refuses_only_past_its_limit_and_says_how_much() {
    assert!(!over_budget(10, 5, None));
    assert!(!over_budget(10, 5, Some(15)));
    assert!(over_budget(10, 6, Some(15)));
    assert!(over_budget(i64::MAX, 1, Some(i64::MAX - 1)));
    assert_eq!(size_text(512), "512 bytes");
    assert_eq!(size_text(64 * 1024), "64 kB");
    assert_eq!(size_text(1536 * 1024 * 1024), "1.5 GB");
    let d = budget_denial(
        "bot",
        "TRUNCATE",
        "shop",
        1024 * 1024,
        3 * 1024 * 1024,
        2 * 1024 * 1024,
    );
    assert!(
        d.message.starts_with("TRUNCATE refused: agent role \"bot\" would remove about 3 MB of rows, and keeping them would take the recycle bin of database \"shop\" past ai_agent_safety.recycle_max_bytes (2 MB; it holds 1 MB now)"),
        "{}",
        d.message
    );
    assert!(
        d.hint
            .contains("ai_agent_safety.purge_dropped('<id>'::bigint)"),
        "{}",
        d.hint
    );
    assert!(
        d.hint
            .ends_with("ALTER DATABASE shop SET ai_agent_safety.recycle_max_bytes = '8MB';"),
        "{}",
        d.hint
    );
}

#[test]
fn rows_entries_are_truncates_and_deletes_and_say_what_was_done() {
    assert!(holds_rows("truncate"));
    assert!(holds_rows("delete"));
    assert!(holds_rows("update"));
    assert_eq!(rows_verb_past("update"), "updated");
    assert!(!holds_rows("table"));
    assert!(!holds_rows("schema"));
    assert!(!holds_rows("database"));
    assert_eq!(rows_verb_past("delete"), "deleted");
    assert_eq!(rows_verb_past("truncate"), "truncated");
    assert_eq!(rows_verb_past("table"), "dropped");
}

#[test]
fn a_bin_schema_others_own_or_reach_refuses_and_says_how_to_fix_it() {
    let d = unsafe_bin_denial("delete", &UnsafeBin::Owner("mallory".into()));
    assert_eq!(
        d.message,
        "DELETE refused: the recycle bin's schema ai_agent_safety_recycle belongs to role \"mallory\", not to the bootstrap superuser, so what the statement removes cannot be kept where only superusers reach it; nothing was deleted"
    );
    assert!(
        d.hint
            .contains("DROP SCHEMA ai_agent_safety_recycle CASCADE;"),
        "{}",
        d.hint
    );
    let d = unsafe_bin_denial(
        "truncate",
        &UnsafeBin::Grants(vec!["PUBLIC".into(), "\"Ops\"".into()]),
    );
    assert!(d.message.starts_with("TRUNCATE refused: the recycle bin's schema ai_agent_safety_recycle grants privileges to PUBLIC, \"Ops\","), "{}", d.message);
    assert!(
        d.message.ends_with("nothing was truncated"),
        "{}",
        d.message
    );
    assert_eq!(
        d.hint,
        "A DBA revokes them: REVOKE ALL ON SCHEMA ai_agent_safety_recycle FROM PUBLIC, \"Ops\";"
    );
    assert!(unsafe_bin_denial("drop", &UnsafeBin::Grants(vec![]))
        .hint
        .ends_with("FROM PUBLIC;"));
}

#[test]
fn a_domain_check_over_kept_rows_is_refused_with_the_way_out() {
    let d = domain_check_of_kept_denial("bot", "public.mood");
    assert!(d.message.starts_with("ALTER DOMAIN refused: agent role \"bot\" may not add or validate a constraint of domain public.mood"), "{}", d.message);
    assert!(
        d.hint
            .ends_with("SELECT id, kind, object FROM ai_agent_safety.recycle_bin ORDER BY id;"),
        "{}",
        d.hint
    );
}
