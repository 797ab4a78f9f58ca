use super::{indented, json_line, mentioned, who};
use kith_node::api::Naming;
use serde_json::json;

#[test]
fn colour_only_on_a_terminal_without_no_color() {
    use super::wants_colour;
    assert!(wants_colour(true, None));
    assert!(wants_colour(true, Some("".into())));
    assert!(!wants_colour(true, Some("1".into())));
    assert!(!wants_colour(false, None));
}

#[test]
fn mentions_show_names() {
    use kith_node::api::Mention;
    let bob = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
    let eve = "12D3KooWJ1vQ8mGXYJ5xDWKGs9TxtvEvCjm4fGfmTrN7gDVw1Wbf";
    let mentions = [
        Mention { id: bob.into(), name: Some("Bob".into()), naming: Naming::default() },
        Mention {
            id: eve.into(),
            name: Some("B\u{1b}[1mob".into()),
            naming: Naming { petname: None, lookalike: true },
        },
    ];
    let text = format!("hi @{bob}, @{eve}! @{bob}x \u{1b}[2J");
    assert_eq!(
        mentioned(&text, &mentions),
        format!("hi @Bob, @Bob [look-alike name] (…gDVw1Wbf)! @{bob}x ")
    );
    assert_eq!(mentioned(&format!("@{bob}"), &mentions[..0]), format!("@{bob}"));
    // A name that cannot be shown as sent brings the id tail along.
    let fake = [Mention {
        id: eve.into(),
        name: Some("Al\u{200B}ice (…kSCVe2Xo)".into()),
        naming: Naming::default(),
    }];
    assert_eq!(
        mentioned(&format!("hi @{eve}"), &fake),
        "hi @“Al<U+200B>ice (…kSCVe2Xo)” (…gDVw1Wbf)"
    );
}

#[test]
fn names_show_what_they_hide_and_cannot_fake_a_tail() {
    let id = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
    let plain = Naming::default();
    assert_eq!(who(id, Some("Alice"), &plain), "Alice (…kSCVe2Xo)");
    assert_eq!(who(id, Some("Al\u{200B}ice"), &plain), "Al<U+200B>ice (…kSCVe2Xo)");
    // A name carrying someone else's tail is quoted.
    assert_eq!(who(id, Some("Bob (…abcdefgh)"), &plain), "“Bob (…abcdefgh)” (…kSCVe2Xo)");
    let lookalike = Naming { petname: None, lookalike: true };
    assert_eq!(who(id, Some("Alice"), &lookalike), "Alice [look-alike name] (…kSCVe2Xo)");
    let petname = Naming { petname: Some("al".into()), lookalike: true };
    assert_eq!(who(id, Some("Alice"), &petname), "al (…kSCVe2Xo)");
    assert_eq!(who(id, Some(" \u{1b}[2J "), &plain), "…kSCVe2Xo");
    assert_eq!(who(id, None, &plain), "…kSCVe2Xo");
}

#[test]
fn json_escapes_what_terminals_act_on() {
    let text = "a\x1b[2J\u{9b}31m\u{9d}0;t\u{9c}\u{7f}\u{2028}\u{202e}é👍";
    let out = json_line(&json!({ "text": text }));
    assert_eq!(out, r#"{"text":"a\u001b[2J\u009b31m\u009d0;t\u009c\u007f\u2028\u202eé👍"}"#);
    let back: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(back["text"], text);
}

#[test]
fn bodies_are_cleaned_and_indented() {
    assert_eq!(indented("a\x1b[1A\rb\nc", "  "), "a\n  b\n  c");
}
