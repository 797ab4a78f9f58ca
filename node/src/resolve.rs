//! Finding people and records by what a person types.
//!
//! Every request that names a person takes, besides a full id, a petname this node's
//! person gave them, a profile name exactly one known person has, or a unique tail of
//! their id of at least [`MIN_TAIL`] characters (what human output shows after `…`).
//! Every request that names a record takes a unique prefix of its id of at least
//! [`MIN_RECORD_PREFIX`] hex digits. Nothing is guessed: no match and several matches
//! are errors, the latter listing the candidates.

use kith_protocol::{AuthorId, RecordId};
use thiserror::Error;

use crate::{
    names::{fold, is_invisible},
    store::{Store, StoreError},
};

/// Fewest characters of an id tail that name a person.
pub const MIN_TAIL: usize = 6;
/// Fewest hex digits of a record id prefix that name a record.
pub const MIN_RECORD_PREFIX: usize = 8;
/// Candidates listed for an ambiguous name or prefix.
const MAX_CANDIDATES: usize = 6;

/// The characters of a peer id (base58, Bitcoin alphabet).
fn is_base58(c: char) -> bool {
    c.is_ascii_alphanumeric() && !matches!(c, '0' | 'O' | 'I' | 'l')
}

/// Why a person or record could not be found.
#[derive(Debug, Error)]
pub enum ResolveError {
    /// The text cannot name anything of the kind asked for.
    #[error("{0}")]
    Invalid(String),
    /// Nothing known matches.
    #[error("{0}")]
    Unknown(String),
    /// Several known things match; the message lists them.
    #[error("{message}")]
    Ambiguous {
        /// One line naming the candidates.
        message: String,
        /// The candidates (full ids).
        candidates: Vec<String>,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Strips what people copy along with a name or tail: `@`, `…`, `...`.
fn bare(text: &str) -> &str {
    let t = text.trim();
    let t = t.strip_prefix('@').unwrap_or(t);
    let t = t.strip_prefix('…').unwrap_or(t);
    t.strip_prefix("...").unwrap_or(t)
}

/// Finds people and records in one node's store.
pub struct Resolver<'a> {
    store: &'a Store,
}

impl<'a> Resolver<'a> {
    /// A resolver over `store`.
    pub fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// The person `text` names: a full id (known or not), a petname, a profile name
    /// exactly one known person has, or a unique id tail of at least [`MIN_TAIL`]
    /// characters. Petnames win over names and tails (they are this person's own).
    ///
    /// # Errors
    /// [`ResolveError::Unknown`], [`ResolveError::Ambiguous`] (listing the candidates),
    /// [`ResolveError::Invalid`] for empty text, or the store's error.
    pub fn person(&self, text: &str) -> Result<AuthorId, ResolveError> {
        let t = bare(text);
        if t.is_empty() {
            return Err(ResolveError::Invalid("no person given".into()));
        }
        if let Ok(id) = t.parse::<AuthorId>() {
            return Ok(id);
        }
        if let Some(id) = self.store.petname_owner(t)? {
            return Ok(id);
        }
        let mut found: Vec<AuthorId> = Vec::new();
        // A typed name matches a profile name that folds alike and draws exactly what it
        // shows: a name with invisible characters, or one that only looks like the typed
        // one (Cyrillic `а` for Latin `a`), is never found by typing.
        let typed = fold(t);
        for (who, name) in self.store.people_looking_like(t, MAX_CANDIDATES * 4)? {
            if fold(&name) == typed && !name.chars().any(is_invisible) && !found.contains(&who) {
                found.push(who);
            }
        }
        let tail_like = t.chars().count() >= MIN_TAIL && t.chars().all(is_base58);
        if tail_like {
            for who in self.store.known_people()? {
                if who.to_string().ends_with(t) && !found.contains(&who) {
                    found.push(who);
                }
            }
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(ResolveError::Unknown(self.unknown_person(t, tail_like))),
            many => {
                let candidates: Vec<String> = many.iter().map(|a| a.to_string()).collect();
                let shown: Vec<String> =
                    many.iter().take(MAX_CANDIDATES).map(|a| self.person_label(a)).collect();
                let more = many.len().saturating_sub(MAX_CANDIDATES);
                let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                Err(ResolveError::Ambiguous {
                    message: format!(
                        "{t:?} could be any of {} people: {}{more}; use more of the id, or \
                         give one a petname (kith name ID PETNAME)",
                        many.len(),
                        shown.join(", ")
                    ),
                    candidates,
                })
            }
        }
    }

    fn unknown_person(&self, t: &str, tail_like: bool) -> String {
        if t.starts_with("12D3KooW") || t.starts_with("Qm") && t.len() > 40 {
            return format!("invalid id {t:?}: not a peer id");
        }
        let short = if !tail_like && t.chars().all(is_base58) && t.chars().count() < MIN_TAIL {
            format!(" (an id tail needs at least {MIN_TAIL} characters)")
        } else {
            String::new()
        };
        format!(
            "no known person is called {t:?} or has an id ending in it{short}; give their \
             full id, a petname, their profile name or the end of their id"
        )
    }

    /// `Name 12D3KooW...` (or the petname, or the id alone) for candidate lists.
    fn person_label(&self, who: &AuthorId) -> String {
        let name = self.store.petname(who).ok().flatten().or_else(|| {
            // Visible in a one-line error, whatever the name holds.
            self.store.display_name(who).ok().flatten().map(|n| crate::text::name(&n).into_owned())
        });
        match name {
            Some(n) => format!("{n:?} {who}"),
            None => who.to_string(),
        }
    }

    /// The record `text` names: a full id (stored or not), or a unique prefix of at
    /// least [`MIN_RECORD_PREFIX`] hex digits of a stored record's id.
    ///
    /// # Errors
    /// [`ResolveError::Invalid`] for text that is no id or prefix,
    /// [`ResolveError::Unknown`], [`ResolveError::Ambiguous`], or the store's error.
    pub fn record(&self, text: &str) -> Result<RecordId, ResolveError> {
        let t = text.trim().trim_end_matches('…').to_ascii_lowercase();
        if let Ok(id) = t.parse::<RecordId>() {
            return Ok(id);
        }
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_hexdigit()) || t.len() > 64 {
            return Err(ResolveError::Invalid(format!(
                "not a record id: {:?} (64 hex digits, or the first {MIN_RECORD_PREFIX} or \
                 more)",
                text.trim()
            )));
        }
        if t.len() < MIN_RECORD_PREFIX {
            return Err(ResolveError::Invalid(format!(
                "record id {t:?} is too short: give at least {MIN_RECORD_PREFIX} hex digits"
            )));
        }
        let found = self.store.records_with_prefix(&t, MAX_CANDIDATES + 1)?;
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(ResolveError::Unknown(format!("unknown record {t} (not on this node)"))),
            many => {
                let candidates: Vec<String> = many.iter().map(|r| r.to_string()).collect();
                // Enough digits that the candidates differ on screen.
                let mut sorted = candidates.clone();
                sorted.sort();
                let common = sorted
                    .windows(2)
                    .map(|w| w[0].bytes().zip(w[1].bytes()).take_while(|(a, b)| a == b).count())
                    .max()
                    .unwrap_or(0);
                let digits = (common + 4).clamp(16, 64);
                let shown: Vec<String> = many
                    .iter()
                    .take(MAX_CANDIDATES)
                    .map(|r| self.record_label(r, digits))
                    .collect();
                let more = if many.len() > MAX_CANDIDATES { " and more" } else { "" };
                Err(ResolveError::Ambiguous {
                    message: format!(
                        "record id {t:?} could be any of: {}{more}; give more digits",
                        shown.join(", ")
                    ),
                    candidates,
                })
            }
        }
    }

    /// `0123456789abcdef… (post by "Name" 12D3KooW...)` for candidate lists.
    fn record_label(&self, id: &RecordId, digits: usize) -> String {
        let hex = id.to_string();
        let short = hex.get(..digits).unwrap_or(&hex);
        match self.store.get(id) {
            Ok(Some(r)) => {
                let kind = r.record.kind.name();
                let by = self.person_label(&r.record.author);
                format!("{short}… ({kind} by {by})")
            }
            _ => format!("{short}…"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kith_protocol::{Keypair, Record, RecordKind};

    use super::*;
    use crate::store::tests::post;

    fn profile(kp: &Keypair, seq: u64, name: &str) -> kith_protocol::VerifiedRecord {
        Record {
            author: kp.id(),
            seq,
            prev: (seq > 1).then(|| RecordId::from_bytes([9; 32])),
            timestamp: 1_000 + seq,
            kind: RecordKind::Profile { name: name.into(), bio: String::new() },
        }
        .sign(kp)
        .unwrap()
    }

    #[test]
    fn people_by_id_petname_name_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let [ann, bob, eve] = [1u8, 2, 3].map(|s| Keypair::from_secret_bytes(&[s; 32]));
        store.insert(&profile(&ann, 1, "Ann")).unwrap();
        store.insert(&profile(&bob, 1, "Bob")).unwrap();
        // A look-alike of Ann's name with a zero-width space: never found by typing.
        store.insert(&profile(&eve, 1, "A\u{200B}nn")).unwrap();
        // Nor one with a Cyrillic а.
        let mallory = Keypair::from_secret_bytes(&[7; 32]);
        store.insert(&profile(&mallory, 1, "\u{430}nn")).unwrap();
        let r = Resolver::new(&store);
        assert_eq!(r.person(&ann.id().to_string()).unwrap(), ann.id());
        assert_eq!(r.person(" ann ").unwrap(), ann.id());
        assert_eq!(r.person("BOB").unwrap(), bob.id());
        let bob_text = bob.id().to_string();
        assert_eq!(r.person(&bob_text[bob_text.len() - 6..]).unwrap(), bob.id());
        assert!(matches!(r.person("carol"), Err(ResolveError::Unknown(_))));
        assert!(matches!(r.person(""), Err(ResolveError::Invalid(_))));
        // A newer profile renames: the old name no longer finds them.
        store.insert(&profile(&bob, 2, "Robert")).unwrap();
        assert!(matches!(r.person("bob"), Err(ResolveError::Unknown(_))));
        assert_eq!(r.person("robert").unwrap(), bob.id());
        // Two people called Ann: ambiguous, both listed; a petname settles it.
        let ann2 = Keypair::from_secret_bytes(&[4; 32]);
        store.insert(&profile(&ann2, 1, "ann")).unwrap();
        match r.person("Ann") {
            Err(ResolveError::Ambiguous { message, candidates }) => {
                assert_eq!(candidates.len(), 2);
                assert!(message.contains(&ann.id().to_string()), "{message}");
                assert!(message.contains(&ann2.id().to_string()), "{message}");
            }
            other => panic!("{other:?}"),
        }
        store.set_petname(&ann2.id(), Some("ann")).unwrap();
        assert_eq!(r.person("ann").unwrap(), ann2.id());
    }

    #[test]
    fn lookalike_names_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let [ann, eve, bob, zed] = [11u8, 12, 13, 14].map(|s| Keypair::from_secret_bytes(&[s; 32]));
        store.insert(&profile(&ann, 1, "Ann")).unwrap();
        store.insert(&profile(&bob, 1, "Bob")).unwrap();
        assert!(!store.looks_like_another(&ann.id()).unwrap());
        assert!(!store.looks_like_another(&zed.id()).unwrap(), "no profile, no look-alike");
        // Eve's name draws like Ann's (Cyrillic А): both are marked.
        store.insert(&profile(&eve, 1, "\u{410}NN")).unwrap();
        assert!(store.looks_like_another(&ann.id()).unwrap());
        assert!(store.looks_like_another(&eve.id()).unwrap());
        assert!(!store.looks_like_another(&bob.id()).unwrap());
        // Eve renames: the old name no longer counts.
        store.insert(&profile(&eve, 2, "Eve")).unwrap();
        assert!(!store.looks_like_another(&ann.id()).unwrap());
        // A name like a petname given to someone else is marked; one's own petname not.
        store.set_petname(&bob.id(), Some("zed")).unwrap();
        store.insert(&profile(&zed, 1, "Z\u{200B}ed")).unwrap();
        assert!(store.looks_like_another(&zed.id()).unwrap());
        store.set_petname(&bob.id(), None).unwrap();
        store.set_petname(&zed.id(), Some("zed")).unwrap();
        assert!(!store.looks_like_another(&zed.id()).unwrap());
    }

    #[test]
    fn name_index_is_rebuilt_for_an_older_store() {
        let dir = tempfile::tempdir().unwrap();
        let kp = Keypair::from_secret_bytes(&[5; 32]);
        {
            let store = Store::open(dir.path()).unwrap();
            store.insert(&profile(&kp, 1, "Zed")).unwrap();
            store.clear_name_index().unwrap();
            store.flush_blocking().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(Resolver::new(&store).person("zed").unwrap(), kp.id());
    }

    #[test]
    fn records_by_prefix_and_ambiguity() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kp = Keypair::from_secret_bytes(&[6; 32]);
        // Two posts whose ids share their first 8 hex digits: seqs 1654 and 80943 of
        // this key, found by a birthday search over 32 bits (trying seqs 1, 2, 3... until
        // two ids shared 4 bytes).
        let make =
            |seq: u64| post(&kp, seq, Some(RecordId::from_bytes([9; 32])), 1_000, &seq.to_string());
        let (first, second) = (make(1654), make(80943));
        assert_eq!(first.id().as_bytes()[..4], second.id().as_bytes()[..4]);
        store.insert(&first).unwrap();
        store.insert(&second).unwrap();
        let r = Resolver::new(&store);
        let (a, b) = (first.id().to_string(), second.id().to_string());
        match r.record(&a[..8]) {
            Err(ResolveError::Ambiguous { message, candidates }) => {
                assert_eq!(candidates.len(), 2, "{message}");
                assert!(message.contains("post by"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // One more digit (or a few) tells them apart, if they differ there.
        let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        assert_eq!(r.record(&a[..common + 1]).unwrap(), first.id());
        assert_eq!(r.record(&b[..common + 1].to_uppercase()).unwrap(), second.id());
        assert_eq!(r.record(&a).unwrap(), first.id());
        assert!(matches!(r.record(&a[..7]), Err(ResolveError::Invalid(_))));
        assert!(matches!(r.record("ffffffff00"), Err(ResolveError::Unknown(_))));
        assert!(matches!(r.record("xyz"), Err(ResolveError::Invalid(_))));
    }
}
