//! What people are called: the rules for petnames (the names a person gives others on
//! their own node) and the folded form of display names used to find a person by name
//! and to notice two people who would look alike.
//!
//! Look-alikes: two names look alike when their [`lookalike_key`]s are equal: folded,
//! then reduced to the Unicode confusable skeleton (UTS #39: Cyrillic `а` and Latin `a`,
//! `1` and `l`, `0` and `O`, `rn` and `m` all become one). Human output marks a person
//! whose name looks like another known person's name, or like a petname given to someone
//! else, and always shows the id tail next to a name.

pub(crate) use crate::text::is_invisible;

/// Longest petname, in characters.
pub const MAX_PETNAME_CHARS: usize = 32;

/// The folded form of a display name: invisible and control characters dropped, runs of
/// white space made one space, trimmed, lower case. Two names with one folded form look
/// alike on a screen; a person's typed name matches a profile name when both fold alike
/// and neither holds invisible characters.
pub fn fold(name: &str) -> String {
    let visible: String = name.chars().filter(|c| !is_invisible(*c) && !c.is_control()).collect();
    visible.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The key under which names that look alike on a screen meet: the [`fold`]ed name
/// reduced to its confusable skeleton (UTS #39), in lower case.
pub fn lookalike_key(name: &str) -> String {
    unicode_security::skeleton(&fold(name)).collect::<String>().to_lowercase()
}

/// Whether `c` can be part of a petname (and so of an `@name` mention word).
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// `text` with every `@word` that `resolve` finds a person for written as `@<full id>`:
/// `@bob` becomes a mention of the person you call bob. A word starts after an `@` that
/// begins the text or follows a character that is not part of a name (so `mail@host`
/// stays), and ends at the first character that cannot be in a petname; dots and dashes
/// at its end are punctuation (`@bob.`). Words that are already ids, and words `resolve`
/// finds nobody for (`None`), stay as typed.
pub fn expand_mentions(
    text: &str,
    mut resolve: impl FnMut(&str) -> Option<kith_protocol::AuthorId>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find('@') {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let prev = head.chars().next_back().or(before);
        let after = tail.get(1..).unwrap_or_default();
        let len = after.find(|c: char| !is_name_char(c)).unwrap_or(after.len());
        let word = after.get(..len).unwrap_or_default().trim_end_matches(['.', '-']);
        let starts_word = !prev.is_some_and(is_name_char);
        let found =
            (starts_word && !word.is_empty() && word.parse::<kith_protocol::AuthorId>().is_err())
                .then(|| resolve(word))
                .flatten();
        match found {
            Some(id) => {
                out.push('@');
                out.push_str(&id.to_string());
                rest = after.get(word.len()..).unwrap_or_default();
                before = word.chars().next_back();
            }
            None => {
                out.push('@');
                rest = after;
                before = Some('@');
            }
        }
    }
    out.push_str(rest);
    out
}

/// Why a petname was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PetnameError {
    /// Empty.
    #[error("a petname cannot be empty")]
    Empty,
    /// Too long.
    #[error("a petname has at most {MAX_PETNAME_CHARS} characters")]
    TooLong,
    /// A character other than a letter, digit, `_`, `-` or `.`.
    #[error(
        "a petname is one word of letters, digits, '_', '-' or '.' (it is also how you \
         @mention them): {0:?} is not allowed"
    )]
    BadChar(char),
    /// It would read as a person's id.
    #[error("a petname cannot be a person's id")]
    LooksLikeId,
}

/// Checks a petname: one word (letters, digits, `_`, `-`, `.`) of at most
/// [`MAX_PETNAME_CHARS`] characters that is not an id. Returns it trimmed.
///
/// # Errors
/// [`PetnameError`] naming what is wrong.
pub fn check_petname(text: &str) -> Result<&str, PetnameError> {
    let name = text.trim();
    let name = name.strip_prefix('@').unwrap_or(name);
    if name.is_empty() {
        return Err(PetnameError::Empty);
    }
    if name.parse::<kith_protocol::AuthorId>().is_ok() {
        return Err(PetnameError::LooksLikeId);
    }
    if name.chars().count() > MAX_PETNAME_CHARS {
        return Err(PetnameError::TooLong);
    }
    if let Some(c) = name.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        return Err(PetnameError::BadChar(c));
    }
    Ok(name)
}

/// Whether two petnames are the same (petnames match without regard to case).
pub fn same_petname(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding() {
        assert_eq!(fold("  Alice   Smith "), "alice smith");
        assert_eq!(fold("Ali\u{200B}ce"), "alice");
        assert_eq!(fold("\u{202E}ecilA"), "ecila");
        assert_eq!(fold("A\u{1b}[31mlice"), "a[31mlice");
    }

    #[test]
    fn lookalikes_meet_under_one_key() {
        let alice = lookalike_key("Alice");
        // Cyrillic а, a digit one for l, a zero-width space, upper case, extra spaces.
        for other in ["\u{430}lice", "A1ice", "Ali\u{200B}ce", "ALICE", " alice "] {
            assert_eq!(lookalike_key(other), alice, "{other:?}");
        }
        assert_eq!(lookalike_key("rnary"), lookalike_key("mary"));
        assert_eq!(lookalike_key("B0B"), lookalike_key("bob"));
        assert_ne!(lookalike_key("Alicia"), alice);
        assert_ne!(lookalike_key("Bob"), alice);
    }

    #[test]
    fn mentions_by_name_become_ids() {
        let bob = kith_protocol::Keypair::from_secret_bytes(&[2; 32]).id();
        let resolve = |w: &str| (w.to_lowercase() == "bob").then_some(bob);
        let expand = |t: &str| expand_mentions(t, resolve);
        assert_eq!(expand("hi @bob."), format!("hi @{bob}."));
        assert_eq!(expand("@Bob, @bob-- and @bob"), format!("@{bob}, @{bob}-- and @{bob}"));
        // Not a word start, nobody, already an id, a lone @: as typed.
        for same in ["mail@bob", "@carol and @@", "@ bob", "x@bob@bob"] {
            assert_eq!(expand(same), same);
        }
        let id = format!("@{bob} hi");
        assert_eq!(expand(&id), id);
        assert_eq!(expand("(@bob)"), format!("(@{bob})"));
        assert_eq!(expand("é@bob ü"), "é@bob ü");
    }

    #[test]
    fn petnames() {
        assert_eq!(check_petname(" bob "), Ok("bob"));
        assert_eq!(check_petname("@bob"), Ok("bob"));
        assert_eq!(check_petname("Zoë.k-2_"), Ok("Zoë.k-2_"));
        assert_eq!(check_petname(""), Err(PetnameError::Empty));
        assert_eq!(check_petname("two words"), Err(PetnameError::BadChar(' ')));
        assert_eq!(check_petname("b\u{200B}ob"), Err(PetnameError::BadChar('\u{200B}')));
        assert_eq!(check_petname(&"x".repeat(33)), Err(PetnameError::TooLong));
        let id = kith_protocol::Keypair::from_secret_bytes(&[1; 32]).id().to_string();
        assert_eq!(check_petname(&id), Err(PetnameError::LooksLikeId));
        assert!(same_petname("Bob", "bOB"));
    }
}
