//! Circles (posts for chosen friends, issue #19): `kith circle ...`, `kith circles` and
//! `kith post --circle`, the driver's side (the decisions are the core's:
//! `crate::core::group::circle`), and reading circle posts for feeds.
//!
//! A circle post is read when it is shown, from the stored record and the inbound
//! session its key share gave this node (decrypting is repeatable): its plaintext is
//! never stored, and a post whose key has not come yet shows once it has.

use kith_protocol::{olm::pickle::PickleKey, AuthorId, Keypair, Record, RecordKind};

use super::{errors::Reply, Node};
use crate::{
    api::{ApiError, CircleEntry, Response},
    core::{
        group::{GroupAnswer, GroupOp},
        Answer, Input,
    },
    store::Store,
};

/// What reading records for this node's person needs: who they are, and the key their
/// session pickles are sealed with.
pub(crate) struct Reader {
    pub(crate) me: AuthorId,
    key: Option<PickleKey>,
}

impl Reader {
    /// A reader for the person of `keypair`.
    pub(crate) fn new(keypair: &Keypair) -> Self {
        let key = PickleKey::derive(keypair)
            .map_err(|error| tracing::error!(%error, "no pickle key: circle posts unread"))
            .ok();
        Self { me: keypair.id(), key }
    }

    /// A reader that reads no circle post (tests).
    #[cfg(test)]
    pub(crate) fn without_keys(me: AuthorId) -> Self {
        Self { me, key: None }
    }

    /// The text of a circle post, when this node holds the key of its session, the
    /// session is its author's, and it decrypts: `None` for every other record.
    pub(crate) fn private_text(&self, store: &Store, record: &Record) -> Option<String> {
        crate::core::group::read_post(store, self.key.as_ref()?, record)
    }

    /// Whether `record` is a post this reader can show: a public one, or a circle post
    /// it reads.
    pub(crate) fn shows(&self, store: &Store, record: &Record) -> bool {
        match &record.kind {
            RecordKind::Private(_) => self.private_text(store, record).is_some(),
            _ => true,
        }
    }
}

impl Node {
    /// A reader for this node's person.
    pub(super) fn reader(&self) -> Reader {
        Reader::new(&self.inner.keypair)
    }

    async fn circle_op(&self, op: GroupOp) -> Result<Answer, ApiError> {
        self.ask(|answer| Input::Group { op, answer }).await
    }

    pub(super) async fn circle_create(&self, name: String, members: &[String]) -> Reply {
        let members = members.iter().map(|m| self.person(m)).collect::<Result<Vec<_>, _>>()?;
        match self.circle_op(GroupOp::CircleCreate { name, members }).await? {
            Answer::Group(GroupAnswer::Done) => Ok(Response::Ok),
            other => Err(ApiError::internal(format!("the core answered {other:?}"))),
        }
    }

    pub(super) async fn circle_change(&self, name: String, who: &str, add: bool) -> Reply {
        let member = self.person(who)?;
        let op = if add {
            GroupOp::CircleAdd { name, member }
        } else {
            GroupOp::CircleRemove { name, member }
        };
        match self.circle_op(op).await? {
            Answer::Group(GroupAnswer::Done) => Ok(Response::Ok),
            other => Err(ApiError::internal(format!("the core answered {other:?}"))),
        }
    }

    pub(super) fn circles(&self) -> Reply {
        let circles = self
            .inner
            .store
            .circles()?
            .into_iter()
            .map(|(name, state)| CircleEntry {
                name,
                members: state
                    .members
                    .iter()
                    .filter_map(|m| AuthorId::from_bytes(*m).ok())
                    .map(|m| m.to_string())
                    .collect(),
            })
            .collect();
        Ok(Response::Circles { circles })
    }

    /// A post to a circle: published as the author's next record once flushed.
    pub(super) async fn circle_post(&self, name: String, text: String) -> Reply {
        let text = self.expand_mentions(&text);
        match self.circle_op(GroupOp::CirclePost { name, text }).await? {
            Answer::Published(record) => Ok(Response::Record { id: record.id().to_string() }),
            other => Err(ApiError::internal(format!("the core answered {other:?}"))),
        }
    }
}
