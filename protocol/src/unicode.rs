//! The Unicode character data that validation depends on, from one pinned ICU4X release
//! (2.4.0, with Unicode 17.0 tables compiled in), never from the Rust standard library.
//!
//! A record check that followed the standard library (`char::is_alphanumeric`,
//! `str::to_lowercase`, `str::trim`) would follow the Unicode version of the compiler that
//! built the node: nodes built with different compilers would disagree on which tags a
//! post carries, and a tag topic punishes a record without its tag. Every property here
//! is named as the Unicode Standard names it, so that an implementation in another
//! language can use its own copy of the same Unicode version:
//!
//! - [`is_alphabetic`]: the derived binary property `Alphabetic`;
//! - [`is_numeric`]: general category `N*` (`Nd`, `Nl` or `No`);
//! - [`is_white_space`]: the binary property `White_Space`;
//! - [`lowercase`]: full case mapping to lower case, language-independent (the root
//!   locale, with the `Final_Sigma` condition), as `toLowercase(X)` in Unicode 3.13;
//! - [`nfkc`]: Normalization Form KC.

use std::borrow::Cow;

use icu_casemap::CaseMapper;
use icu_locale_core::LanguageIdentifier;
use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::{
    props::{Alphabetic, GeneralCategory, GeneralCategoryGroup, WhiteSpace},
    CodePointMapData, CodePointSetData,
};

/// Whether `c` has the Unicode property `Alphabetic`.
pub fn is_alphabetic(c: char) -> bool {
    CodePointSetData::new::<Alphabetic>().contains(c)
}

/// Whether `c` is of general category `N*` (`Nd`, `Nl` or `No`).
pub fn is_numeric(c: char) -> bool {
    GeneralCategoryGroup::Number.contains(CodePointMapData::<GeneralCategory>::new().get(c))
}

/// Whether `c` has the Unicode property `White_Space`.
pub fn is_white_space(c: char) -> bool {
    CodePointSetData::new::<WhiteSpace>().contains(c)
}

/// `text` in lower case: the full, language-independent case mapping.
pub fn lowercase(text: &str) -> Cow<'_, str> {
    CaseMapper::new().lowercase_to_string(text, &LanguageIdentifier::UNKNOWN)
}

/// `text` in Normalization Form KC.
pub fn nfkc(text: &str) -> Cow<'_, str> {
    ComposingNormalizerBorrowed::new_nfkc().normalize(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_the_named_unicode_ones() {
        // Alphabetic includes letters, letter numbers and some marks; not digits.
        for c in ['a', 'É', 'ß', 'ж', '中', 'Ⅻ', '\u{0345}'] {
            assert!(is_alphabetic(c), "{c:?}");
        }
        for c in ['1', '_', '#', '\u{0301}', ' ', '😀'] {
            assert!(!is_alphabetic(c), "{c:?}");
        }
        // N*: decimal digits of any script, letter numbers, other numbers.
        for c in ['7', '٣', '߉', 'Ⅻ', '½', '²', '①'] {
            assert!(is_numeric(c), "{c:?}");
        }
        for c in ['a', 'x', '_', '\u{0301}'] {
            assert!(!is_numeric(c), "{c:?}");
        }
        for c in [' ', '\t', '\n', '\u{0085}', '\u{00a0}', '\u{2028}', '\u{3000}'] {
            assert!(is_white_space(c), "{c:?}");
        }
        // Zero-width space and the byte-order mark are not white space.
        for c in ['\u{200b}', '\u{feff}', 'a', '\u{180e}'] {
            assert!(!is_white_space(c), "{c:?}");
        }
    }

    #[test]
    fn lowercase_is_full_and_language_independent() {
        assert_eq!(lowercase("RUST"), "rust");
        // One character to two: İ is i + combining dot above (not Turkish dotless rules).
        assert_eq!(lowercase("İ"), "i\u{307}");
        assert_eq!(lowercase("I"), "i");
        // Final sigma: σ inside a word, ς at its end.
        assert_eq!(lowercase("ΟΔΟΣ"), "οδος");
        assert_eq!(lowercase("ΣΑ"), "σα");
        assert_eq!(nfkc("ｒｕｓｔ"), "rust");
        assert_eq!(nfkc("cafe\u{301}"), "café");
    }
}
