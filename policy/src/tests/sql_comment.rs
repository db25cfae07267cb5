use crate::sql_comment::{tag, value, MAX_VALUE, TASK_KEY, TOKEN_KEY};

const T: &str = "8c2952f6-081c-488d-b9ff-9afcc9069553";

#[test]
fn reads_a_trailing_tag_in_sqlcommenter_form() {
    let s = format!("DELETE FROM customers WHERE id < 5 {}", tag(TOKEN_KEY, T));
    assert_eq!(value(&s, TOKEN_KEY).unwrap().as_deref(), Some(T));
    assert_eq!(value(&s, TASK_KEY).unwrap(), None);
}

#[test]
fn reads_leading_tags_several_in_one_comment_and_decodes_values() {
    let s = format!(
        "/*ai_agent_safety_task='cleanup%2012', ai_agent_safety_token='{T}',route='%2Fx'*/ DELETE FROM t"
    );
    assert_eq!(value(&s, TOKEN_KEY).unwrap().as_deref(), Some(T));
    assert_eq!(value(&s, TASK_KEY).unwrap().as_deref(), Some("cleanup 12"));
}

#[test]
fn text_that_only_looks_like_a_tag_is_not_read() {
    for s in [
        format!("INSERT INTO notes VALUES ('/*ai_agent_safety_token=''{T}''*/')"),
        format!("INSERT INTO notes VALUES (E'\\'/*ai_agent_safety_token=''{T}''*/')"),
        format!("INSERT INTO notes VALUES ($$ /*ai_agent_safety_token='{T}'*/ $$)"),
        format!("INSERT INTO notes VALUES ($q$ /*ai_agent_safety_token='{T}'*/ $q$)"),
        format!("INSERT INTO notes VALUES ($€$ /*ai_agent_safety_token='{T}'*/ $€$)"),
        format!("INSERT INTO notes VALUES ($×x$ /*ai_agent_safety_token='{T}'*/ $×x$)"),
        format!("SELECT 1 AS \"/*ai_agent_safety_token='{T}'*/\""),
        format!("DELETE FROM t -- /*ai_agent_safety_token='{T}'*/"),
        "DELETE FROM t /* ai_agent_safety_token is what you need */".to_string(),
    ] {
        assert_eq!(value(&s, TOKEN_KEY).unwrap(), None, "{s}");
    }
}

#[test]
fn parameters_and_nested_comments_do_not_confuse_it() {
    let s = format!(
        "DELETE FROM t WHERE id = $1 /* outer /* inner */ {} */",
        "x"
    );
    assert_eq!(value(&s, TOKEN_KEY).unwrap(), None);
    let s = format!(
        "DELETE FROM t WHERE id = $1 AND $2 = 'a' {}",
        tag(TOKEN_KEY, T)
    );
    assert_eq!(value(&s, TOKEN_KEY).unwrap().as_deref(), Some(T));
}

#[test]
fn the_same_tag_twice_is_read_once_and_two_different_are_refused() {
    let s = format!("{} DELETE FROM t {}", tag(TOKEN_KEY, T), tag(TOKEN_KEY, T));
    assert_eq!(value(&s, TOKEN_KEY).unwrap().as_deref(), Some(T));
    let s = format!(
        "{} DELETE FROM t {}",
        tag(TOKEN_KEY, T),
        tag(TOKEN_KEY, "other")
    );
    assert!(value(&s, TOKEN_KEY).unwrap_err().contains("two different"));
}

#[test]
fn malformed_and_oversized_tags_are_errors_not_ignored() {
    let e = value("DELETE FROM t /*ai_agent_safety_token='abc*/", TOKEN_KEY).unwrap_err();
    assert!(e.contains("no closing quote"), "{e}");
    let e = value("DELETE FROM t /*ai_agent_safety_token='%zz'*/", TOKEN_KEY).unwrap_err();
    assert!(e.contains("%-escape"), "{e}");
    let e = value("DELETE FROM t /*ai_agent_safety_task='a%00b'*/", TASK_KEY).unwrap_err();
    assert!(e.contains("NUL"), "{e}");
    let long = "x".repeat(MAX_VALUE + 1);
    let e = value(&format!("DELETE FROM t {}", tag(TASK_KEY, &long)), TASK_KEY).unwrap_err();
    assert!(e.contains("longer than"), "{e}");
}

#[test]
fn an_unterminated_comment_or_string_reads_nothing() {
    assert_eq!(
        value("DELETE FROM t /*ai_agent_safety_token='x'", TOKEN_KEY).unwrap(),
        None
    );
    assert_eq!(
        value("DELETE FROM t WHERE a = 'open", TOKEN_KEY).unwrap(),
        None
    );
    assert_eq!(value("SELECT $tag$ never closed", TOKEN_KEY).unwrap(), None);
}
