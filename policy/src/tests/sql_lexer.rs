use crate::sql_lexer::start_with_leading_comments as start;

#[test]
fn the_first_statement_starts_at_the_beginning_with_its_leading_comment() {
    let s = "/*ai_agent_safety_token='x'*/ DELETE FROM t";
    // PostgreSQL 18 places the statement at DELETE; 15 and 17 at 0.
    assert_eq!(start(s, s.find("DELETE").unwrap()), 0);
    assert_eq!(start(s, 0), 0);
}

#[test]
fn a_later_statement_starts_past_the_semicolon_before_it() {
    let s = "SELECT 1; /*tag*/ DELETE FROM t";
    assert_eq!(start(s, s.find("DELETE").unwrap()), 9);
    // Where 15 and 17 already place it: unchanged.
    assert_eq!(start(s, 9), 9);
}

#[test]
fn semicolons_in_strings_names_and_comments_do_not_count() {
    for s in [
        "SELECT ';' /* ; */ -- ;\n DELETE FROM t",
        "SELECT \";\", $$;$$, $q$;$q$, E'\\';' DELETE FROM t",
    ] {
        assert_eq!(start(s, s.find("DELETE").unwrap()), 0, "{s}");
    }
}
