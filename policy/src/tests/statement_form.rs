use crate::statement_form::of;

#[test]
fn case_whitespace_comments_and_the_final_semicolon_do_not_change_the_form() {
    let a = of("DELETE FROM orders WHERE id <= 10");
    for same in [
        "delete from ORDERS where id<=10",
        "DELETE\n  FROM orders -- old rows\n WHERE id <= 10;",
        "/*ai_agent_safety_token='8c2952f6-081c-488d-b9ff-9afcc9069553'*/ DELETE FROM orders WHERE id <= 10",
        "DELETE FROM orders /* a /* nested */ note */ WHERE id <=10 ;;",
    ] {
        assert_eq!(of(same), a, "{same}");
    }
    assert_eq!(a, "delete from orders where id <= 10");
}

#[test]
fn constants_names_operators_and_parameters_change_it() {
    let a = of("DELETE FROM orders WHERE id <= 10");
    for other in [
        "DELETE FROM orders WHERE id <= 1000",
        "DELETE FROM orders WHERE id < 10",
        "DELETE FROM orders WHERE id <= $1",
        "DELETE FROM public.orders WHERE id <= 10",
        "DELETE FROM \"Orders\" WHERE id <= 10",
        "DELETE FROM orders WHERE id <= 10 OR true",
        "DELETE FROM orders WHERE id <= 1e1",
    ] {
        assert_ne!(of(other), a, "{other}");
    }
}

#[test]
fn strings_keep_their_case_and_contents() {
    assert_ne!(
        of("DELETE FROM t WHERE note = 'Old'"),
        of("DELETE FROM t WHERE note = 'old'")
    );
    // A comment-like text inside a string is part of it.
    assert_ne!(
        of("DELETE FROM t WHERE note = '/* x */'"),
        of("DELETE FROM t WHERE note = ''")
    );
    assert_eq!(
        of("DELETE FROM t WHERE note = 'it''s'"),
        "delete from t where note = 'it''s'"
    );
    assert_eq!(
        of("DELETE FROM t WHERE note = E'a\\'b -- c'"),
        "delete from t where note = e'a\\'b -- c'"
    );
    assert_eq!(
        of("DELETE FROM t WHERE note = $q$ Mixed -- Case $q$"),
        "delete from t where note = $q$ Mixed -- Case $q$"
    );
}

#[test]
fn a_carriage_return_ends_a_line_comment_as_postgresql_reads_it() {
    assert_ne!(of("TRUNCATE orders --\r CASCADE"), of("TRUNCATE orders"));
    assert_eq!(
        of("TRUNCATE orders --\r CASCADE"),
        "truncate orders cascade"
    );
}

#[test]
fn numbers_and_signs_are_tokens_of_their_own() {
    assert_eq!(
        of("UPDATE t SET n=n-1 WHERE id=-5"),
        "update t set n = n - 1 where id = - 5"
    );
    assert_eq!(of("SELECT 1.5e+3, .5"), "select 1.5e+3 , .5");
}

#[test]
fn with_standard_conforming_strings_off_a_backslash_escapes_and_the_form_says_so() {
    use crate::statement_form::of_with;
    // Read with the setting off, PostgreSQL sees one string where the
    // default reading sees a string and a comment.
    let sql = r"ALTER TABLE t ALTER COLUMN note TYPE text USING note || 'a\' /* ' || NULL -- */";
    let approved = r"ALTER TABLE t ALTER COLUMN note TYPE text USING note || 'a\'";
    assert_eq!(
        of_with(approved, true),
        of_with(sql, true),
        "the default reading cannot tell them apart"
    );
    assert_ne!(of_with(approved, true), of_with(sql, false));
    assert!(
        of_with(sql, false).contains(r"'a\' /* '"),
        "{}",
        of_with(sql, false)
    );
    // The same text under the other setting is another form.
    assert_ne!(
        of_with(r"SELECT 'a\nb'", true),
        of_with(r"SELECT 'a\nb'", false)
    );
}
