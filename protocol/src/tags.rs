//! Hashtags: parsing from post text and normalisation.
//!
//! A hashtag is `#` followed by letters, digits and `_` (Unicode `Alphabetic`, general
//! category `N*`, by the pinned tables of [`crate::unicode`]), starting where a word may
//! start (not right after a letter, digit, `_` or `#`), with at least one character that is
//! not a digit, and at most [`MAX_TAG_CHARS`] characters. Text is NFKC-normalised before
//! tags are read, and tags are compared in lower case (then NFKC again), so `#Rust`,
//! `#rust` and `#ｒｕｓｔ` (full-width letters) are one tag, and so are `#café` written with
//! one character or with `e` and a combining accent. A post yields at most
//! [`MAX_TAGS_PER_POST`] distinct tags, in order of first appearance.

use std::{fmt, str::FromStr};

use thiserror::Error;

use crate::{
    limits::{MAX_TAGS_PER_POST, MAX_TAG_CHARS},
    unicode::{self, nfkc},
};

/// Why a tag was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TagError {
    /// Nothing after the optional `#`.
    #[error("empty hashtag")]
    Empty,
    /// More than [`MAX_TAG_CHARS`] characters.
    #[error("hashtag longer than {MAX_TAG_CHARS} characters")]
    TooLong,
    /// A character other than a letter, digit or `_`.
    #[error("hashtag may contain only letters, digits and _: {0:?}")]
    BadChar(char),
    /// Only digits (`#123` is a number, not a tag).
    #[error("hashtag must contain a letter or _")]
    OnlyDigits,
}

/// A normalised (lower-case) hashtag, without the `#`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

/// A letter, digit or `_`: Unicode `Alphabetic` or general category `N*`, or `_` (the
/// pinned tables of [`unicode`], not the compiler's).
fn is_tag_char(c: char) -> bool {
    // Most text is ASCII, where the tables say what `char`'s ASCII methods say (a test
    // checks all 128); a table look-up is a binary search.
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    unicode::is_alphabetic(c) || unicode::is_numeric(c)
}

impl Tag {
    /// Parses a tag given by a person or a topic name, with or without a leading `#`.
    ///
    /// # Errors
    /// See [`TagError`].
    pub fn parse(text: &str) -> Result<Self, TagError> {
        let text = nfkc(text);
        let body = text.strip_prefix('#').unwrap_or(&text);
        if body.is_empty() {
            return Err(TagError::Empty);
        }
        if let Some(bad) = body.chars().find(|c| !is_tag_char(*c)) {
            return Err(TagError::BadChar(bad));
        }
        Self::from_word(body)
    }

    /// Builds a tag from a run of tag characters.
    fn from_word(word: &str) -> Result<Self, TagError> {
        if word.chars().count() > MAX_TAG_CHARS {
            return Err(TagError::TooLong);
        }
        if word.chars().all(unicode::is_numeric) {
            return Err(TagError::OnlyDigits);
        }
        let lower = nfkc(&unicode::lowercase(word)).into_owned();
        // Lower-casing can lengthen a few characters (`İ` becomes `i` + a combining dot);
        // the normalised form must still be a tag by the same rules.
        if lower.chars().count() > MAX_TAG_CHARS {
            return Err(TagError::TooLong);
        }
        if let Some(bad) = lower.chars().find(|c| !is_tag_char(*c)) {
            return Err(TagError::BadChar(bad));
        }
        Ok(Self(lower))
    }

    /// The tag text, lower case, without `#`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl FromStr for Tag {
    type Err = TagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The distinct hashtags of a post's text, in order of first appearance, at most
/// [`MAX_TAGS_PER_POST`]. Words that are not valid tags are skipped.
pub fn extract_tags(text: &str) -> Vec<Tag> {
    let text = nfkc(text);
    let text = text.as_ref();
    let mut tags: Vec<Tag> = Vec::new();
    let mut prev: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let before = prev.replace(c);
        if c != '#' || before.is_some_and(|p| is_tag_char(p) || p == '#') {
            continue;
        }
        let start = i + c.len_utf8();
        let mut end = start;
        while let Some(&(j, d)) = chars.peek() {
            if !is_tag_char(d) {
                break;
            }
            end = j + d.len_utf8();
            prev = Some(d);
            chars.next();
        }
        let Some(word) = text.get(start..end) else { continue };
        if word.is_empty() {
            continue;
        }
        if let Ok(tag) = Tag::from_word(word) {
            if !tags.contains(&tag) {
                tags.push(tag);
                if tags.len() == MAX_TAGS_PER_POST {
                    break;
                }
            }
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(text: &str) -> Vec<String> {
        extract_tags(text).into_iter().map(|t| t.0).collect()
    }

    /// The ASCII shortcut of [`is_tag_char`] agrees with the pinned tables.
    #[test]
    fn ascii_tag_chars_are_those_of_the_tables() {
        for c in (0u8..=127).map(char::from) {
            let by_tables = unicode::is_alphabetic(c) || unicode::is_numeric(c) || c == '_';
            assert_eq!(is_tag_char(c), by_tables, "{c:?}");
        }
    }

    #[test]
    fn basic_and_case() {
        assert_eq!(strs("hello #Rust and #rust, #P2P!"), ["rust", "p2p"]);
        assert_eq!(Tag::parse("#Rust").unwrap(), Tag::parse("rust").unwrap());
    }

    #[test]
    fn unicode_letters() {
        assert_eq!(strs("#Ünïcode #日本語 #café_2"), ["ünïcode", "日本語", "café_2"]);
    }

    /// Issue #13 item 12: one tag however its letters are encoded. Before NFKC, `#ｒｕｓｔ`
    /// was a tag of its own and `#cafe` + U+0301 stopped at the accent (`#cafe`).
    #[test]
    fn compatibility_and_decomposed_forms_are_one_tag() {
        assert_eq!(strs("#ｒｕｓｔ #Ｒｕｓｔ"), ["rust"]);
        assert_eq!(strs("#cafe\u{301} #caf\u{e9}"), ["caf\u{e9}"]);
        assert_eq!(Tag::parse("#cafe\u{301}"), Tag::parse("café"));
        assert_eq!(Tag::parse("ｒｕｓｔ"), Tag::parse("rust"));
        // Ligatures and circled letters are compatibility forms too.
        assert_eq!(strs("#ﬁsh"), ["fish"]);
        // A full-width number sign starts a tag like `#`.
        assert_eq!(strs("\u{ff03}kith"), ["kith"]);
    }

    #[test]
    fn not_tags() {
        assert!(
            strs("a#b c## #123 # #-x email@x#y").is_empty(),
            "{:?}",
            strs("a#b c## #123 # #-x")
        );
        assert_eq!(strs("##double"), Vec::<String>::new());
    }

    #[test]
    fn boundaries() {
        assert_eq!(strs("(#tag) #end."), ["tag", "end"]);
        assert_eq!(strs("#a#b"), ["a"]);
        assert_eq!(strs("#1st"), ["1st"]);
    }

    #[test]
    fn length_limit() {
        let ok = "a".repeat(MAX_TAG_CHARS);
        let long = "a".repeat(MAX_TAG_CHARS + 1);
        assert_eq!(strs(&format!("#{ok} #{long}")), std::slice::from_ref(&ok));
        assert_eq!(Tag::parse(&long), Err(TagError::TooLong));
    }

    #[test]
    fn count_limit() {
        let text: String = (0..MAX_TAGS_PER_POST + 5).map(|i| format!("#t{i} ")).collect();
        let tags = strs(&text);
        assert_eq!(tags.len(), MAX_TAGS_PER_POST);
        assert_eq!(tags[0], "t0");
    }

    #[test]
    fn parse_errors() {
        assert_eq!(Tag::parse("#"), Err(TagError::Empty));
        assert_eq!(Tag::parse(""), Err(TagError::Empty));
        assert_eq!(Tag::parse("a b"), Err(TagError::BadChar(' ')));
        assert_eq!(Tag::parse("42"), Err(TagError::OnlyDigits));
    }
}
