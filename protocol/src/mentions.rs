//! Mentions: `@<peer-id>` in post text.

use crate::{identity::AuthorId, limits::MAX_MENTIONS_PER_POST};

/// The distinct people mentioned as `@<peer-id>` in `text`, in order, at most
/// [`MAX_MENTIONS_PER_POST`]. Words after `@` that are not peer ids are ignored.
pub fn extract_mentions(text: &str) -> Vec<AuthorId> {
    let mut out: Vec<AuthorId> = Vec::new();
    for (i, _) in text.match_indices('@') {
        let rest = text.get(i + 1..).unwrap_or("");
        let word: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if let Ok(id) = word.parse::<AuthorId>() {
            if !out.contains(&id) {
                out.push(id);
                if out.len() == MAX_MENTIONS_PER_POST {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn finds_peer_ids() {
        let a = Keypair::from_secret_bytes(&[1; 32]).id();
        let b = Keypair::from_secret_bytes(&[2; 32]).id();
        let text = format!("hi @{a}, and @{b}! again @{a} @nobody");
        assert_eq!(extract_mentions(&text), vec![a, b]);
        assert!(extract_mentions("@ @@ mail@example.com").is_empty());
    }
}
