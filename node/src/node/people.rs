//! People by name: the resolver behind every request that names a person or a record,
//! and petnames (`kith name`, `kith names`).

use kith_protocol::{AuthorId, RecordId};

use super::{errors::Reply, view, Node};
use crate::{
    api::{ApiError, NameEntry, Response},
    names::check_petname,
    resolve::Resolver,
};

impl Node {
    /// The person `text` names (id, petname, unique profile name, unique id tail).
    pub(super) fn person(&self, text: &str) -> Result<AuthorId, ApiError> {
        Ok(Resolver::new(&self.inner.store).person(text)?)
    }

    /// The record `text` names (id, or unique prefix of at least 8 hex digits).
    pub(super) fn record_ref(&self, text: &str) -> Result<RecordId, ApiError> {
        Ok(Resolver::new(&self.inner.store).record(text)?)
    }

    /// `peer` for the daemon's log: `Name (12D3KooW...)` with your petname or their name
    /// when one is known (shown as [`crate::text::name`] shows names), else the id.
    pub(super) fn peer_label(&self, peer: &libp2p::PeerId) -> String {
        let store = &self.inner.store;
        let name = AuthorId::from_peer_id(peer).ok().and_then(|who| {
            store.petname(&who).ok().flatten().or_else(|| view::name_of(store, &who))
        });
        match name {
            Some(n) => format!("{} ({peer})", crate::text::name(&n)),
            None => peer.to_string(),
        }
    }

    /// `text` with each `@word` that names one person (petname, unique profile name, id
    /// tail) written as `@<their id>`, so that the post mentions them.
    pub(super) fn expand_mentions(&self, text: &str) -> String {
        let resolver = Resolver::new(&self.inner.store);
        crate::names::expand_mentions(text, |word| resolver.person(word).ok())
    }

    /// Gives `id` the petname `petname`, or with `None` takes theirs away.
    pub(super) async fn name(&self, id: &str, petname: Option<&str>) -> Reply {
        let who = self.person(id)?;
        let store = &self.inner.store;
        let petname = match petname {
            Some(text) => {
                let p = check_petname(text).map_err(|e| ApiError::invalid(e.to_string()))?;
                if let Some(owner) = store.petname_owner(p)? {
                    if owner != who {
                        return Err(ApiError::refused(format!(
                            "{p:?} is already your petname for {owner}; give them another \
                             first (or remove it: kith name {owner} --remove)"
                        )));
                    }
                }
                Some(p)
            }
            None => {
                if store.petname(&who)?.is_none() {
                    return Err(ApiError::not_found(format!("{who} has no petname")));
                }
                None
            }
        };
        store.set_petname(&who, petname)?;
        store.flush().await?;
        Ok(Response::Ok)
    }

    /// Every petname, with the profile name of each person.
    pub(super) fn names(&self) -> Reply {
        let store = &self.inner.store;
        let mut entries: Vec<NameEntry> = store
            .petnames()?
            .into_iter()
            .map(|(who, petname)| NameEntry {
                id: who.to_string(),
                petname,
                name: view::name_of(store, &who),
                naming: view::naming_of(store, &who),
            })
            .collect();
        entries.sort_by_key(|e| e.petname.to_lowercase());
        Ok(Response::Names { entries })
    }
}
