//! A corpus of hostile strings, and the properties every output keeps.

use std::borrow::Cow;

use proptest::prelude::*;

use super::{body, line, name};

/// (input, body, line, name)
const CORPUS: &[(&str, &str, &str, &str)] = &[
    // Plain text of many scripts is left alone.
    ("hello #kith", "hello #kith", "hello #kith", "hello #kith"),
    (
        "日本語 العربية עברית café",
        "日本語 العربية עברית café",
        "日本語 العربية עברית café",
        "日本語 العربية עברית café",
    ),
    // Colours, clearing the screen, moving the cursor up to rewrite earlier lines.
    ("\x1b[31mred\x1b[0m", "red", "red", "red"),
    ("a\x1b[2J\x1b[Hb", "ab", "ab", "ab"),
    ("ok\x1b[1A\x1b[2Kfake", "okfake", "okfake", "okfake"),
    ("\x1b[38;2;255;0;0mrgb", "rgb", "rgb", "rgb"),
    ("\x1b[?1049hscreen", "screen", "screen", "screen"),
    // Window title (OSC 0 and 2), ended by BEL or by ST.
    ("\x1b]0;pwned\x07title", "title", "title", "title"),
    ("\x1b]2;pwned\x1b\\title", "title", "title", "title"),
    // A hyperlink whose target is not what it says (OSC 8).
    ("\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\", "click", "click", "click"),
    // A clipboard write (OSC 52).
    ("copy\x1b]52;c;cm0gLXJmIH4K\x07me", "copyme", "copyme", "copyme"),
    // An OSC never ended swallows the rest of its own field, nothing else.
    ("before\x1b]0;never ended", "before", "before", "before"),
    // DCS, SOS, PM, APC strings.
    ("a\x1bP1$r0m\x1b\\b", "ab", "ab", "ab"),
    ("a\x1bXsos\x1b\\b\x1b^pm\x1b\\c\x1b_apc\x1b\\d", "abcd", "abcd", "abcd"),
    // Short escapes: keypad mode, charset switch, reset, string terminator alone.
    ("a\x1b=b\x1b(0c\x1bcd\x1b\\e", "abcde", "abcde", "abcde"),
    // A lone ESC, and ESC at the end.
    ("a\x1b\u{e9}b\x1b", "a\u{e9}b", "a\u{e9}b", "a\u{e9}b"),
    // The 8-bit (C1) forms of CSI, OSC, DCS and ST.
    ("\u{9b}31mred", "red", "red", "red"),
    ("\u{9d}0;title\u{9c}x", "x", "x", "x"),
    ("\u{90}q\u{9c}x\u{85}y", "x\ny", "x y", "x y"),
    // Carriage return to print over a line; backspace to erase; bell; NUL; DEL.
    ("safe\rEVIL", "safe\nEVIL", "safe EVIL", "safe EVIL"),
    ("abc\x08\x08\x08xyz\x07\0\x7f!", "abcxyz!", "abcxyz!", "abcxyz!"),
    // Line breaks of every kind; CR LF is one break; tabs.
    (
        "a\r\nb\nc\u{b}d\u{c}e\u{2028}f\u{2029}g",
        "a\nb\nc\nd\ne\nf\ng",
        "a b c d e f g",
        "a b c d e f g",
    ),
    ("col\tcol", "col\tcol", "col col", "col col"),
    // A fake author line after a newline stays in the body (the CLI indents it).
    (
        "hi\n2026-01-01 00:00  alice (…abcd1234)",
        "hi\n2026-01-01 00:00  alice (…abcd1234)",
        "hi 2026-01-01 00:00  alice (…abcd1234)",
        "hi 2026-01-01 00:00  alice (…abcd1234)",
    ),
    // Bidi overrides and isolates reorder what follows: removed, or shown in names.
    ("invoice\u{202e}fdp.exe", "invoicefdp.exe", "invoicefdp.exe", "invoice<U+202E>fdp.exe"),
    ("\u{2067}x\u{2069}", "x", "x", "<U+2067>x<U+2069>"),
    // Invisible characters: kept in text, shown in names.
    ("ali\u{200b}ce", "ali\u{200b}ce", "ali\u{200b}ce", "ali<U+200B>ce"),
    ("bob\u{200d}", "bob\u{200d}", "bob\u{200d}", "bob<U+200D>"),
    (
        "\u{feff}eve\u{ad}\u{2060}",
        "\u{feff}eve\u{ad}\u{2060}",
        "\u{feff}eve\u{ad}\u{2060}",
        "<U+FEFF>eve<U+00AD><U+2060>",
    ),
    ("\u{3164}", "\u{3164}", "\u{3164}", "<U+3164>"),
    ("a\u{200e}b\u{200f}", "a\u{200e}b\u{200f}", "a\u{200e}b\u{200f}", "a<U+200E>b<U+200F>"),
    ("e\u{fe0f}", "e\u{fe0f}", "e\u{fe0f}", "e<U+FE0F>"),
    // Emoji sequences keep their joiners and variation selectors.
    (
        "👩\u{200d}💻 ❤\u{fe0f} 👍🏽",
        "👩\u{200d}💻 ❤\u{fe0f} 👍🏽",
        "👩\u{200d}💻 ❤\u{fe0f} 👍🏽",
        "👩\u{200d}💻 ❤\u{fe0f} 👍🏽",
    ),
    ("❤\u{fe0f}\u{200d}🔥", "❤\u{fe0f}\u{200d}🔥", "❤\u{fe0f}\u{200d}🔥", "❤\u{fe0f}\u{200d}🔥"),
    (
        "🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}",
        "🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}",
        "🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}",
        "🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}",
    ),
    // A joiner that joins nothing visible is shown.
    ("👩\u{200d}x", "👩\u{200d}x", "👩\u{200d}x", "👩<U+200D>x"),
    // A CSI cut short by a control: nothing of it survives that a terminal would act on.
    ("a\x1b[3\n1mb", "a\n1mb", "a 1mb", "a 1mb"),
];

#[test]
fn corpus() {
    for (input, b, l, n) in CORPUS {
        assert_eq!(body(input), *b, "body of {input:?}");
        assert_eq!(line(input), *l, "line of {input:?}");
        assert_eq!(name(input), *n, "name of {input:?}");
    }
}

#[test]
fn clean_text_is_borrowed() {
    for text in ["", "plain", "two\nlines\tand a tab", "👩\u{200d}💻 ❤\u{fe0f}", "ü ß 日本"]
    {
        assert!(matches!(body(text), Cow::Borrowed(_)), "{text:?}");
    }
    assert!(matches!(line("a b"), Cow::Borrowed(_)));
    assert!(matches!(name("alice ❤\u{fe0f}"), Cow::Borrowed(_)));
    assert!(matches!(line("a\nb"), Cow::Owned(_)));
}

/// What no output may contain: ESC, DEL, C1 controls, C0 controls other than `\n` and
/// `\t` (none at all for single lines), bidi controls.
pub(crate) fn assert_safe(out: &str, multiline: bool) {
    for c in out.chars() {
        let allowed_control = multiline && (c == '\n' || c == '\t');
        assert!(
            allowed_control
                || !matches!(c, '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}'),
            "control {c:?} in {out:?}"
        );
        assert!(!super::is_bidi_control(c), "bidi control {c:?} in {out:?}");
    }
}

fn hostile_char() -> impl Strategy<Value = char> {
    let specials: Vec<u32> = "\x1b[]\\\x07\r\n\t\u{9b}\u{9c}\u{9d}\u{200d}\u{fe0f}\u{202e}👩;0"
        .chars()
        .map(u32::from)
        .collect();
    prop_oneof![
        proptest::sample::select(specials),
        0x20u32..0x7f,
        0u32..0x20,
        0x80u32..0xa0,
        any::<char>().prop_map(u32::from),
    ]
    .prop_filter_map("a char", char::from_u32)
}

proptest! {
    #[test]
    fn outputs_are_safe_and_stable(chars in proptest::collection::vec(hostile_char(), 0..64)) {
        let input: String = chars.into_iter().collect();
        let (b, l, n) = (body(&input), line(&input), name(&input));
        assert_safe(&b, true);
        assert_safe(&l, false);
        assert_safe(&n, false);
        prop_assert_eq!(body(&b), b.clone());
        prop_assert_eq!(line(&l), l.clone());
        prop_assert_eq!(name(&n), n.clone());
        // Removing sequences never adds text: a line is the body, flattened.
        prop_assert_eq!(line(&b), l.clone());
    }
}
