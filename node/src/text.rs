//! Text from the network, made safe to show on a terminal or in a page.
//!
//! Peers choose every byte of a post, a name, a bio, a message, a reaction or a refusal
//! reason. Printed raw, that text can move the cursor, rewrite earlier lines, change the
//! window title (OSC 0), plant a hyperlink (OSC 8), write the clipboard (OSC 52), or
//! reorder what follows it (bidi overrides). Every piece of network text goes through one
//! of the three functions here before it is shown to a person:
//!
//! - [`body`] for multi-line text (posts, bios, direct messages): escape sequences and
//!   control characters are removed; line breaks (LF, CR, CR LF, VT, FF, NEL, U+2028,
//!   U+2029) become one `\n` each, and tabs stay; bidi embeddings, overrides and isolates
//!   (U+202A..U+202E, U+2066..U+2069) are removed.
//! - [`line`] for single-line fields (reaction emoji, tags, addresses, reasons): as
//!   [`body`], and every line break or tab becomes one space.
//! - [`name`] for names people are recognised by: as [`line`], and characters that
//!   cannot be seen (zero-width characters, bidi marks and controls, fillers and other
//!   default-ignorable code points) are shown as `<U+XXXX>`, so that `alice` with a
//!   zero-width space inside does not pass for `alice`. Zero-width joiners and variation
//!   selectors inside an emoji sequence (`👩‍💻`, `❤️`) are kept.
//!
//! An escape sequence is removed whole: ESC or its C1 form, then for CSI its parameters
//! and final byte; for OSC, DCS, SOS, PM and APC everything up to the string terminator
//! (ST, or BEL for OSC) or, unterminated, to the end of the text. The output never
//! contains ESC, DEL, a C1 control or a C0 control other than `\n` and `\t` (none at all
//! from [`line`] and [`name`]), so no terminal can find a sequence in it; the functions
//! are idempotent and return the input borrowed when it is already clean.
//!
//! ```
//! use kith_node::text;
//! assert_eq!(text::body("hi \x1b[2J\x1b]52;c;aGk=\x07there\r\n"), "hi there\n");
//! assert_eq!(text::line("a\nb\tc"), "a b c");
//! assert_eq!(text::name("ali\u{200b}ce"), "ali<U+200B>ce");
//! ```

use std::{borrow::Cow, iter::Peekable, ops::RangeInclusive};

type Chars<'a> = Peekable<std::str::Chars<'a>>;

/// What to do with line breaks and invisible characters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Body,
    Line,
    Name,
}

/// Multi-line text (posts, bios, direct messages) without escape sequences or controls;
/// line breaks normalised to `\n`, tabs kept. See the [module](self) documentation.
pub fn body(text: &str) -> Cow<'_, str> {
    clean(text, Mode::Body)
}

/// Single-line text (reaction emoji, tags, addresses, reasons): as [`body`], with every
/// line break and tab turned into one space.
pub fn line(text: &str) -> Cow<'_, str> {
    clean(text, Mode::Line)
}

/// A name (profile names, petnames): as [`line`], with invisible characters shown as
/// `<U+XXXX>`.
pub fn name(text: &str) -> Cow<'_, str> {
    clean(text, Mode::Name)
}

/// Whether [`body`] would change nothing in `text`. Used to take the borrowed path
/// without allocating.
fn is_clean(text: &str, mode: Mode) -> bool {
    let mut emoji = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' if mode == Mode::Body => {}
            c if is_control(c) || is_line_break(c) || is_bidi_control(c) => return false,
            c if mode == Mode::Name => {
                if is_invisible(c) && !emoji_part(c, emoji, chars.peek().copied()) {
                    return false;
                }
                emoji = continues_emoji(c, emoji);
            }
            _ => {}
        }
    }
    true
}

fn clean(text: &str, mode: Mode) -> Cow<'_, str> {
    if is_clean(text, mode) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut emoji = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(kind) = sequence_start(c, &mut chars) {
            skip_sequence(kind, &mut chars);
            continue;
        }
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        if is_line_break(c) || c == '\t' {
            let keep = if c == '\t' { '\t' } else { '\n' };
            out.push(if mode == Mode::Body { keep } else { ' ' });
            emoji = false;
            continue;
        }
        if is_control(c) {
            continue;
        }
        if mode == Mode::Name && (is_invisible(c) || is_bidi_control(c)) {
            if emoji_part(c, emoji, chars.peek().copied()) {
                out.push(c);
            } else {
                out.push_str(&format!("<U+{:04X}>", u32::from(c)));
                emoji = false;
            }
            continue;
        }
        if is_bidi_control(c) {
            continue;
        }
        emoji = continues_emoji(c, emoji);
        out.push(c);
    }
    Cow::Owned(out)
}

/// The kinds of escape sequence, by how they end.
#[derive(Clone, Copy)]
enum Sequence {
    /// CSI: parameter and intermediate bytes, then one final byte.
    Csi,
    /// OSC: a string ended by ST or BEL.
    Osc,
    /// DCS, SOS, PM, APC: a string ended by ST.
    Text,
    /// ESC, intermediate bytes, one final byte.
    Short,
    /// A lone ESC or C1 control: nothing more to skip.
    Lone,
}

/// If `c` starts an escape sequence, which kind (taking the byte after ESC that names it).
fn sequence_start(c: char, chars: &mut Chars<'_>) -> Option<Sequence> {
    match c {
        '\u{1b}' => {
            let kind = match chars.peek() {
                Some('[') => Sequence::Csi,
                Some(']') => Sequence::Osc,
                Some('P' | 'X' | '^' | '_') => Sequence::Text,
                Some(' '..='~') => Sequence::Short,
                _ => return Some(Sequence::Lone),
            };
            if !matches!(kind, Sequence::Short) {
                chars.next();
            }
            Some(kind)
        }
        '\u{9b}' => Some(Sequence::Csi),
        '\u{9d}' => Some(Sequence::Osc),
        '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => Some(Sequence::Text),
        _ => None,
    }
}

fn skip_sequence(kind: Sequence, chars: &mut Chars<'_>) {
    match kind {
        // Parameter bytes 0x30..0x3F and intermediate bytes 0x20..0x2F, then a final
        // byte 0x40..0x7E.
        Sequence::Csi => skip_to_final(chars, ' '..='?', '@'..='~'),
        // Intermediate bytes 0x20..0x2F, then a final byte 0x30..0x7E.
        Sequence::Short => skip_to_final(chars, ' '..='/', '0'..='~'),
        Sequence::Osc | Sequence::Text => {
            let bel_ends = matches!(kind, Sequence::Osc);
            while let Some(c) = chars.next() {
                match c {
                    '\u{7}' if bel_ends => return,
                    '\u{9c}' => return,
                    '\u{1b}' if chars.peek() == Some(&'\\') => {
                        chars.next();
                        return;
                    }
                    _ => {}
                }
            }
        }
        Sequence::Lone => {}
    }
}

/// Skips characters in `middle`, then one in `last`. Anything else ends the sequence
/// without being taken (it is then text or a control on its own).
fn skip_to_final(chars: &mut Chars<'_>, middle: RangeInclusive<char>, last: RangeInclusive<char>) {
    while let Some(&c) = chars.peek() {
        if middle.contains(&c) {
            chars.next();
            continue;
        }
        if last.contains(&c) {
            chars.next();
        }
        return;
    }
}

/// C0 controls, DEL and C1 controls.
fn is_control(c: char) -> bool {
    matches!(c, '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Characters that end a line on some terminal or in some editor.
fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// Bidi embeddings, overrides and isolates: they reorder the text after them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Code points that print as nothing (or as blank space that is not a space): the
/// Unicode default-ignorable code points, bidi marks, and the Hangul fillers.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{17b4}'
            | '\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fff8}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// Pictographs that start or continue an emoji sequence (a coarse, fixed set of blocks:
/// misc symbols and dingbats, and the emoji planes).
fn is_pictograph(c: char) -> bool {
    matches!(
        c,
        '\u{a9}'
            | '\u{ae}'
            | '\u{203c}'
            | '\u{2049}'
            | '\u{2122}'
            | '\u{2139}'
            | '\u{2194}'..='\u{21aa}'
            | '\u{2300}'..='\u{23ff}'
            | '\u{24c2}'
            | '\u{25aa}'..='\u{27bf}'
            | '\u{2934}'
            | '\u{2935}'
            | '\u{2b00}'..='\u{2bff}'
            | '\u{3030}'
            | '\u{303d}'
            | '\u{3297}'
            | '\u{3299}'
            | '\u{1f000}'..='\u{1faff}'
    )
}

/// Whether an invisible `c` is part of an emoji sequence: a variation selector or tag
/// character after a pictograph, or a zero-width joiner between a pictograph and the
/// next one.
fn emoji_part(c: char, in_emoji: bool, next: Option<char>) -> bool {
    in_emoji
        && match c {
            '\u{200d}' => next.is_some_and(is_pictograph),
            '\u{fe0e}' | '\u{fe0f}' | '\u{e0020}'..='\u{e007f}' => true,
            _ => false,
        }
}

/// Whether an emoji sequence continues after `c`.
fn continues_emoji(c: char, in_emoji: bool) -> bool {
    is_pictograph(c)
        || (in_emoji
            && matches!(c, '\u{200d}' | '\u{fe0e}' | '\u{fe0f}' | '\u{e0020}'..='\u{e007f}'))
}

#[cfg(test)]
mod tests;
