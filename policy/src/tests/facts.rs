//! Tests for `facts.rs`: TokenState and parse_token_id.

use super::*;

// ---------------------------------------------------------------------------
// TokenState / parse_token_id
// ---------------------------------------------------------------------------

#[test]
fn token_state_parse() {
    assert_eq!(TokenState::parse("pending"), Some(TokenState::Pending));
    assert_eq!(TokenState::parse("granted"), Some(TokenState::Granted));
    assert_eq!(TokenState::parse("denied"), Some(TokenState::Denied));
    assert_eq!(TokenState::parse("cancelled"), Some(TokenState::Cancelled));
    assert_eq!(TokenState::parse("GRANTED"), None);
    assert_eq!(TokenState::parse("used"), None);
    assert_eq!(TokenState::parse(""), None);
}

#[test]
fn parse_token_id_canonical() {
    assert_eq!(
        parse_token_id(TOKEN_ID).map(|u| u.to_string()).as_deref(),
        Some(TOKEN_ID)
    );
}

#[test]
fn parse_token_id_uppercase_is_lowered() {
    assert_eq!(
        parse_token_id("3F2C1E9A-8B7D-4C6E-9F10-2A3B4C5D6E7F")
            .map(|u| u.to_string())
            .as_deref(),
        Some(TOKEN_ID)
    );
}

#[test]
fn parse_token_id_braces_and_blanks() {
    assert_eq!(
        parse_token_id("{3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f}")
            .map(|u| u.to_string())
            .as_deref(),
        Some(TOKEN_ID)
    );
    assert_eq!(
        parse_token_id("  3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f \n")
            .map(|u| u.to_string())
            .as_deref(),
        Some(TOKEN_ID)
    );
    assert_eq!(
        parse_token_id("{3f2c1e9a8b7d4c6e9f102a3b4c5d6e7f}")
            .map(|u| u.to_string())
            .as_deref(),
        Some(TOKEN_ID)
    );
}

#[test]
fn parse_token_id_unbalanced_braces_rejected() {
    assert_eq!(
        parse_token_id("{3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f"),
        None
    );
    assert_eq!(
        parse_token_id("3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f}"),
        None
    );
    assert_eq!(
        parse_token_id("{{3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f}}"),
        None
    );
}

#[test]
fn parse_token_id_without_hyphens() {
    assert_eq!(
        parse_token_id("3f2c1e9a8b7d4c6e9f102a3b4c5d6e7f")
            .map(|u| u.to_string())
            .as_deref(),
        Some(TOKEN_ID)
    );
    assert_eq!(
        parse_token_id("3F2C1E9A8B7D4C6E9F102A3B4C5D6E7F")
            .map(|u| u.to_string())
            .as_deref(),
        Some(TOKEN_ID)
    );
}

#[test]
fn parse_token_id_wrong_group_lengths() {
    assert_eq!(parse_token_id("3f2c1e9a8-b7d-4c6e-9f10-2a3b4c5d6e7f"), None);
    assert_eq!(parse_token_id("3f2c1e9a-8b7d4c6e-9f10-2a3b-4c5d6e7f"), None);
    assert_eq!(parse_token_id("3f2c1e9a-8b7d-4c6e-9f102a3b4c5d6e7f"), None);
    assert_eq!(
        parse_token_id("3f2c1e9a--8b7d-4c6e-9f10-2a3b4c5d6e7f"),
        None
    );
    assert_eq!(
        parse_token_id("-3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f"),
        None
    );
    assert_eq!(
        parse_token_id("3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f-"),
        None
    );
}

#[test]
fn parse_token_id_non_hex() {
    assert_eq!(parse_token_id("3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7g"), None);
    assert_eq!(parse_token_id("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"), None);
    assert_eq!(parse_token_id("3f2c1e9a 8b7d 4c6e 9f10 2a3b4c5d6e7f"), None);
    // Non-ASCII characters must not panic and are rejected.
    assert_eq!(parse_token_id("3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6eé"), None);
    assert_eq!(
        parse_token_id("３f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f"),
        None
    );
}

#[test]
fn parse_token_id_too_short_or_long() {
    assert_eq!(parse_token_id("3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7"), None);
    assert_eq!(
        parse_token_id("3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f0"),
        None
    );
    assert_eq!(parse_token_id("3f2c1e9a8b7d4c6e9f102a3b4c5d6e7"), None);
    assert_eq!(parse_token_id("3f2c1e9a8b7d4c6e9f102a3b4c5d6e7f00"), None);
    assert_eq!(parse_token_id("3f2c"), None);
}

#[test]
fn parse_token_id_empty() {
    assert_eq!(parse_token_id(""), None);
    assert_eq!(parse_token_id("   "), None);
    assert_eq!(parse_token_id("{}"), None);
    assert_eq!(parse_token_id("----"), None);
}
