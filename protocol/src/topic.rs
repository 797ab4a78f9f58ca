//! Gossip topic names: one per author and one per hashtag.

use std::fmt;

use crate::{identity::AuthorId, tags::Tag};

/// Prefix of every author topic: `kith/1/author/<peer-id>`.
pub const AUTHOR_TOPIC_PREFIX: &str = "kith/1/author/";
/// Prefix of every hashtag topic: `kith/1/tag/<tag>`.
pub const TAG_TOPIC_PREFIX: &str = "kith/1/tag/";

/// A gossip topic kith uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// An author's records; their followers subscribe.
    Author(AuthorId),
    /// Posts carrying a hashtag.
    Tag(Tag),
}

impl Topic {
    /// Parses a topic name; `None` for names that are not kith topics.
    pub fn parse(name: &str) -> Option<Self> {
        if let Some(id) = name.strip_prefix(AUTHOR_TOPIC_PREFIX) {
            return id.parse().ok().map(Self::Author);
        }
        if let Some(tag) = name.strip_prefix(TAG_TOPIC_PREFIX) {
            let tag = Tag::parse(tag).ok()?;
            // Only the normalised spelling is a topic.
            return (tag.as_str() == tag_text(name)).then_some(Self::Tag(tag));
        }
        None
    }
}

fn tag_text(name: &str) -> &str {
    name.strip_prefix(TAG_TOPIC_PREFIX).unwrap_or(name)
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Author(id) => write!(f, "{AUTHOR_TOPIC_PREFIX}{id}"),
            Self::Tag(tag) => write!(f, "{TAG_TOPIC_PREFIX}{tag}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn round_trip() {
        let id = Keypair::from_secret_bytes(&[3; 32]).id();
        for t in [Topic::Author(id), Topic::Tag(Tag::parse("rust").unwrap())] {
            assert_eq!(Topic::parse(&t.to_string()), Some(t));
        }
        assert_eq!(Topic::parse("kith/1/tag/Rust"), None);
        assert_eq!(Topic::parse("other"), None);
        assert_eq!(Topic::parse("kith/1/author/nope"), None);
    }
}
