//! People by name: the resolver behind every request that names a person or a record,
//! and petnames (`kith name`, `kith names`).

use kith_protocol::{AuthorId, RecordId};

use super::{view, Node};
use crate::{
    api::{NameEntry, Response},
    names::check_petname,
    resolve::Resolver,
};

type Reply = Result<Response, String>;

fn store_err(e: impl std::fmt::Display) -> String {
    format!("store: {e}")
}

impl Node {
    /// The person `text` names (id, petname, unique profile name, unique id tail).
    pub(super) fn person(&self, text: &str) -> Result<AuthorId, String> {
        Resolver::new(&self.inner.store).person(text).map_err(|e| e.to_string())
    }

    /// The record `text` names (id, or unique prefix of at least 8 hex digits).
    pub(super) fn record_ref(&self, text: &str) -> Result<RecordId, String> {
        Resolver::new(&self.inner.store).record(text).map_err(|e| e.to_string())
    }

    /// Gives `id` the petname `petname`, or with `None` takes theirs away.
    pub(super) async fn name(&self, id: &str, petname: Option<&str>) -> Reply {
        let who = self.person(id)?;
        let store = &self.inner.store;
        let petname = match petname {
            Some(text) => {
                let p = check_petname(text).map_err(|e| e.to_string())?;
                if let Some(owner) = store.petname_owner(p).map_err(store_err)? {
                    if owner != who {
                        return Err(format!(
                            "{p:?} is already your petname for {owner}; give them another \
                             first (or remove it: kith name {owner} --remove)"
                        ));
                    }
                }
                Some(p)
            }
            None => {
                if store.petname(&who).map_err(store_err)?.is_none() {
                    return Err(format!("{who} has no petname"));
                }
                None
            }
        };
        store.set_petname(&who, petname).map_err(store_err)?;
        store.flush().await.map_err(store_err)?;
        Ok(Response::Ok)
    }

    /// Every petname, with the profile name of each person.
    pub(super) fn names(&self) -> Reply {
        let store = &self.inner.store;
        let mut entries: Vec<NameEntry> = store
            .petnames()
            .map_err(store_err)?
            .into_iter()
            .map(|(who, petname)| NameEntry {
                id: who.to_string(),
                petname,
                name: view::name_of(store, &who),
            })
            .collect();
        entries.sort_by_key(|e| e.petname.to_lowercase());
        Ok(Response::Names { entries })
    }
}
