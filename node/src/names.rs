//! What people are called: the rules for petnames (the names a person gives others on
//! their own node) and the folded form of display names used to find a person by name
//! and to notice two people who would look alike.

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
