//! `kith group ...` and `kith groups`: the driver's side (the decisions are the core's:
//! `crate::core::group`), and reading groups and their messages from the store.

use kith_protocol::{
    group::{
        membership::{Membership, SignedMembership},
        GroupId,
    },
    AuthorId,
};

use super::{errors::Reply, Node};
use crate::{
    api::{ApiError, ErrorKind, GroupEntry, GroupMessageEntry, Response},
    core::{
        group::{GroupAnswer, GroupOp},
        Answer, Input,
    },
};

impl Node {
    /// The group `text` names: its id (32 hex digits) or a name unique among the groups
    /// this node's person is in.
    fn group_ref(&self, text: &str) -> Result<GroupId, ApiError> {
        let all = self.inner.store.groups()?;
        if let Ok(id) = text.parse::<GroupId>() {
            if all.iter().any(|(g, _)| g == id.as_bytes()) {
                return Ok(id);
            }
        }
        let named: Vec<GroupId> = self
            .my_groups()?
            .into_iter()
            .filter(|(_, m)| m.name == text)
            .map(|(id, _)| id)
            .collect();
        match named.as_slice() {
            [one] => Ok(*one),
            [] => Err(ApiError::not_found(format!("no group {text:?}"))),
            _ => Err(ApiError::new(
                ErrorKind::Ambiguous,
                format!("{} groups are called {text:?}: use the id", named.len()),
            )),
        }
    }

    /// The groups this node's person is in, with their current membership.
    fn my_groups(&self) -> Result<Vec<(GroupId, Membership)>, ApiError> {
        let mut out = Vec::new();
        for (id, state) in self.inner.store.groups()? {
            if !state.active {
                continue;
            }
            if let Ok(verified) = SignedMembership::from_bytes(&state.membership) {
                out.push((GroupId::from_bytes(id), verified.membership().clone()));
            }
        }
        Ok(out)
    }

    async fn group_op(&self, op: GroupOp) -> Result<GroupAnswer, ApiError> {
        match self.ask(|answer| Input::Group { op, answer }).await? {
            Answer::Group(done) => Ok(done),
            other => Err(ApiError::internal(format!("the core answered {other:?}"))),
        }
    }

    pub(super) async fn group_create(&self, name: String, members: &[String]) -> Reply {
        let members = members.iter().map(|m| self.person(m)).collect::<Result<Vec<_>, _>>()?;
        match self.group_op(GroupOp::Create { name, members }).await? {
            GroupAnswer::Created(id) => Ok(Response::Record { id: id.to_string() }),
            other => Err(ApiError::internal(format!("the core answered {other:?}"))),
        }
    }

    /// Adds `who` (`add`: with the history or not) or removes them.
    pub(super) async fn group_change(&self, group: &str, who: &str, add: Option<bool>) -> Reply {
        let (group, member) = (self.group_ref(group)?, self.person(who)?);
        let op = match add {
            Some(history) => GroupOp::Add { group, member, history },
            None => GroupOp::Remove { group, member },
        };
        self.group_op(op).await?;
        Ok(Response::Ok)
    }

    pub(super) async fn group_leave(&self, group: &str) -> Reply {
        let group = self.group_ref(group)?;
        self.group_op(GroupOp::Leave { group }).await?;
        Ok(Response::Ok)
    }

    pub(super) async fn group_send(&self, group: &str, text: String) -> Reply {
        let group = self.group_ref(group)?;
        match self.group_op(GroupOp::Send { group, text }).await? {
            GroupAnswer::Sent(id) => Ok(Response::Record { id: id.to_string() }),
            other => Err(ApiError::internal(format!("the core answered {other:?}"))),
        }
    }

    pub(super) fn groups(&self) -> Reply {
        let me = *self.inner.me.as_bytes();
        let mut groups = Vec::new();
        for (id, m) in self.my_groups()? {
            groups.push(GroupEntry {
                id: id.to_string(),
                name: m.name,
                members: m.members.iter().map(AuthorId::to_string).collect(),
                creator: m.creator.to_string(),
                unread: self.inner.store.group_unread(id.as_bytes(), &me)?,
            });
        }
        groups.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(Response::Groups { groups })
    }

    pub(super) fn group_thread(&self, group: &str, limit: Option<usize>) -> Reply {
        let group = self.group_ref(group)?;
        let limit = super::dm::thread_limit(limit)?;
        let store = &self.inner.store;
        let lines = store.group_thread(group.as_bytes(), limit)?;
        // Reading a thread marks it read, as for direct messages.
        store.group_mark_read(group.as_bytes())?;
        let messages = lines
            .into_iter()
            .map(|line| {
                let from = AuthorId::from_bytes(line.from).ok();
                GroupMessageEntry {
                    id: kith_protocol::dm::MessageId::from_bytes(line.id).to_string(),
                    from: from.map(|a| a.to_string()).unwrap_or_default(),
                    text: line.text,
                    timestamp: line.timestamp,
                    from_name: from.and_then(|a| super::view::name_of(store, &a)),
                    naming: from.map(|a| super::view::naming_of(store, &a)).unwrap_or_default(),
                }
            })
            .collect();
        Ok(Response::GroupThread { messages })
    }
}
