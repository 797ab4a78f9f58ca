//! Control requests: validate the input, act, answer. Errors are one line for a person.

use std::sync::atomic::Ordering;

use kith_protocol::{
    limits::MAX_TEXT_BYTES, mentions::extract_mentions, AuthorId, Post, RecordKind, Tag, Topic,
};
use libp2p::Multiaddr;
use tokio::sync::broadcast;

use super::{errors::Reply, now_ms, view, LivePost, Node};
use crate::api::{ApiError, FeedItem, NatStatus, PeerEntry, Request, Response, Status};

/// Thread length when none is asked for.
pub const DEFAULT_THREAD_LIMIT: usize = 50;

pub(super) fn parse_tag(text: &str) -> Result<Tag, ApiError> {
    Tag::parse(text.trim()).map_err(|e| ApiError::invalid(format!("invalid hashtag {text:?}: {e}")))
}

/// What a live feed passes through.
pub(crate) struct LiveFilter {
    tag: Option<Tag>,
    author: Option<AuthorId>,
}

/// A stream of new posts for `kith feed --live`.
pub struct LiveFeed {
    node: Node,
    rx: broadcast::Receiver<LivePost>,
    filter: LiveFilter,
}

impl LiveFeed {
    /// The next new post that matches, or `None` when the node stops.
    pub async fn next(&mut self) -> Option<FeedItem> {
        loop {
            match self.rx.recv().await {
                Ok(post) => {
                    if self.node.live_matches(&self.filter, &post) {
                        return Some(post.item);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "live feed reader too slow; skipped posts");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Node {
    pub(super) async fn dispatch(&self, request: Request) -> Reply {
        match request {
            Request::Id => Ok(self.id_reply()),
            Request::Stop => {
                tracing::info!("kith stop: shutting down");
                self.inner.stop.send_replace(true);
                Ok(Response::Ok)
            }
            Request::Status => self.status().await,
            Request::Peers => self.peers().await,
            Request::Dial { addr } if !addr.trim_start().starts_with('/') => {
                self.dial_person(&addr).await
            }
            Request::Dial { addr } => self.dial(&addr).await,
            Request::Invite { expires_in_ms } => self.invite(expires_in_ms).await,
            Request::Add { link, petname } => self.add(&link, petname.as_deref()).await,
            Request::CirclePost { name, text } => self.circle_post(name, text).await,
            Request::Post { text, reply_to, expires_in_ms, attach } => {
                self.post(text, reply_to.as_deref(), expires_in_ms, attach).await
            }
            Request::CircleCreate { name, members } => self.circle_create(name, &members).await,
            Request::CircleAdd { name, member } => self.circle_change(name, &member, true).await,
            Request::CircleRemove { name, member } => {
                self.circle_change(name, &member, false).await
            }
            Request::Circles => self.circles(),
            Request::Thread { id } => self.thread(&id),
            Request::React { id, emoji } => self.react(&id, emoji).await,
            Request::Unreact { id } => self.react(&id, String::new()).await,
            Request::Repost { id } => self.repost(&id).await,
            Request::Unrepost { id } => self.unrepost(&id).await,
            Request::Delete { id } => self.delete(&id).await,
            Request::Notifications { unread, limit, .. } => self.notifications(unread, limit),
            Request::Block { id } => self.moderate(&id, Some(true), None).await,
            Request::Unblock { id } => self.moderate(&id, Some(false), None).await,
            Request::Mute { id } => self.moderate(&id, None, Some(true)).await,
            Request::Unmute { id } => self.moderate(&id, None, Some(false)).await,
            Request::Blocked => self.blocked(),
            Request::Feed { tag, author, limit, live: _, before } => {
                self.feed(tag.as_deref(), author.as_deref(), limit, before.as_deref())
            }
            Request::Follow { id } => self.follow(&id, true).await,
            Request::Unfollow { id } => self.follow(&id, false).await,
            Request::Following => self.following(),
            Request::Followers => self.followers(),
            Request::Subscribe { tag } => self.subscribe(&tag, true).await,
            Request::Unsubscribe { tag } => self.subscribe(&tag, false).await,
            Request::Tags => self.tags(),
            Request::ProfileSet { name, bio } => self.profile_set(name, bio).await,
            Request::ProfileShow { id } => self.profile_show(id.as_deref()),
            Request::MsgSend { to, text, attach } => self.msg_send(&to, text, attach).await,
            Request::BlobGet { hash, out } => self.blob_get(&hash, out, None).await,
            Request::MsgInbox => self.msg_inbox(),
            Request::Sync => {
                let (fetched, peers) =
                    self.sync_round(usize::MAX, None, super::Stranger::Wait).await;
                Ok(Response::Synced { fetched, peers })
            }
            Request::MsgThread { peer, limit } => self.msg_thread(&peer, limit).await,
            Request::Name { id, petname } => self.name(&id, petname.as_deref()).await,
            Request::Names => self.names(),
            Request::GroupCreate { name, members } => self.group_create(name, &members).await,
            Request::GroupAdd { group, id, history } => {
                self.group_change(&group, &id, Some(history)).await
            }
            Request::GroupRemove { group, id } => self.group_change(&group, &id, None).await,
            Request::GroupLeave { group } => self.group_leave(&group).await,
            Request::Groups => self.groups(),
            Request::GroupSend { group, text } => self.group_send(&group, text).await,
            Request::GroupThread { group, limit } => self.group_thread(&group, limit),
            Request::Mailbox => self.mailbox(),
            Request::MailboxAdd { id } => self.mailbox_add(&id).await,
            Request::MailboxRemove { id } => self.mailbox_remove(&id).await,
            Request::Settings => self.settings(),
            Request::SettingsSet { set } => self.settings_set(set).await,
            // The daemon's control socket answers this when its web interface runs.
            Request::Web => Err(ApiError::unavailable(
                "the web interface is off (the daemon runs with --no-web, or web = \"off\" \
                 in config.toml)",
            )),
        }
    }

    /// Starts a live feed of new posts matching the filters (the timeline when none).
    ///
    /// # Errors
    /// A bad tag or id.
    pub fn live_feed(&self, tag: Option<&str>, author: Option<&str>) -> Result<LiveFeed, ApiError> {
        let filter = LiveFilter {
            tag: tag.map(parse_tag).transpose()?,
            author: author.map(|a| self.person(a)).transpose()?,
        };
        Ok(LiveFeed { node: self.clone(), rx: self.live(), filter })
    }

    fn live_matches(&self, filter: &LiveFilter, post: &LivePost) -> bool {
        if let Some(author) = &filter.author {
            if post.author != *author {
                return false;
            }
        }
        if let Some(tag) = &filter.tag {
            if !post.item.tags.iter().any(|t| t == tag.as_str()) {
                return false;
            }
        }
        if filter.author.is_some() || filter.tag.is_some() {
            return true;
        }
        let store = &self.inner.store;
        let me = self.inner.me;
        post.author == me
            || store.is_following(&me, &post.author).unwrap_or(false)
            || store.subscriptions().is_ok_and(|subs| {
                subs.iter().any(|s| post.item.tags.iter().any(|t| t == s.as_str()))
            })
    }

    fn id_reply(&self) -> Response {
        Response::Id {
            id: self.inner.me.to_string(),
            addrs: self.listen_addrs().iter().map(|a| a.to_string()).collect(),
        }
    }

    async fn status(&self) -> Reply {
        let stats = self.inner.net.stats().await?;
        let store = &self.inner.store;
        let me = &self.inner.me;
        let counts = store.counts();
        let counts_dm = store.dm_count();
        let mut record_counters = self.core_counters();
        // Gossip the network task dropped before the node saw it.
        record_counters.rate_limited += stats.gossip_rate_limited;
        record_counters.ignored += stats.gossip_overflow;
        Ok(Response::Status(Box::new(Status {
            id: me.to_string(),
            peers: stats.peers,
            mesh_peers: stats.mesh_peers,
            peers_graylisted: stats.graylisted,
            peers_penalised: stats.penalised,
            topics: stats.topics,
            records: counts.records,
            posts: counts.posts,
            messages: counts_dm,
            outbox: store.dm_outbox_len(),
            groups: store.groups()?.iter().filter(|(_, g)| g.active).count(),
            group_outbox: store.group_queue_len(),
            circles: store.circles()?.len(),
            unread_notifications: store.unread_notifications()?,
            following: store.following(me)?.len(),
            followers: store.followers(me)?.len(),
            addrs: self.listen_addrs().iter().map(|a| a.to_string()).collect(),
            uptime_s: self.inner.started.elapsed().as_secs(),
            record_counters,
            connections_refused: stats.connections_refused,
            connections_evicted: stats.connections_evicted,
            requests_refused: self.inner.inbound.stats().refused,
            sync: self.sync_snapshot(),
            blobs: {
                let c = self.inner.blobs.counts();
                crate::api::BlobStatus {
                    blobs: c.blobs,
                    bytes: c.bytes,
                    partial: c.partial,
                    quota: self.inner.blobs.limits().quota,
                    chunks_fetched: self.inner.blob.chunks_fetched.load(Ordering::Relaxed),
                }
            },
            nat: NatStatus {
                reachability: stats.reachability.as_str().into(),
                public_addr: stats.public_addr.map(|a| a.to_string()),
                relay_reservations: stats.relay_addrs.iter().map(|a| a.to_string()).collect(),
                relay: stats.relay_mode.as_str().into(),
                relaying_for: stats.relaying_for,
                relay_refused: stats.relay_refused,
                holepunch_ok: stats.holepunch_ok,
                holepunch_failed: stats.holepunch_failed,
            },
        })))
    }

    async fn peers(&self) -> Reply {
        let peers = self.inner.net.peers().await?;
        Ok(Response::Peers {
            peers: peers
                .into_iter()
                .map(|p| {
                    let person = AuthorId::from_peer_id(&p.peer).ok();
                    let store = &self.inner.store;
                    PeerEntry {
                        id: p.peer.to_string(),
                        addr: p.addr.to_string(),
                        score: p.score,
                        connection: if p.relayed { "relayed" } else { "direct" }.into(),
                        name: person.and_then(|a| view::name_of(store, &a)),
                        naming: person.map(|a| view::naming_of(store, &a)).unwrap_or_default(),
                    }
                })
                .collect(),
        })
    }

    async fn dial(&self, addr: &str) -> Reply {
        let parsed: Multiaddr = addr
            .trim()
            .parse()
            .map_err(|e| ApiError::invalid(format!("invalid multiaddr {addr:?}: {e}")))?;
        self.inner.net.dial(parsed).await?;
        Ok(Response::Ok)
    }

    async fn post(
        &self,
        text: String,
        reply_to: Option<&str>,
        expires_in: Option<u64>,
        attach: Vec<String>,
    ) -> Reply {
        if text.trim().is_empty() && attach.is_empty() {
            return Err(ApiError::invalid("post text is empty"));
        }
        // `@bob` mentions the person called bob here: the record carries their id.
        let text = self.expand_mentions(&text);
        if text.len() > MAX_TEXT_BYTES {
            return Err(ApiError::invalid(format!(
                "post text is {} bytes (with @mentions written as ids); the limit is \
                 {MAX_TEXT_BYTES}",
                text.len()
            )));
        }
        let reply_to = reply_to.map(|r| self.record_ref(r)).transpose()?;
        if let Some(parent) = reply_to.and_then(|p| self.inner.store.get(&p).ok().flatten()) {
            super::social::refuse_private(&parent.record)?;
        }
        let mentions = extract_mentions(&text);
        let expires_at = match expires_in {
            Some(0) => return Err(ApiError::invalid("--expires must be more than 0")),
            Some(ms) => Some(now_ms().saturating_add(ms)),
            None => None,
        };
        let attachments = self.prepare_attachments(attach).await.map_err(ApiError::invalid)?;
        let post = Post { text, reply_to, mentions, expires_at, attachments };
        let signed = self.publish_own(RecordKind::Post(post)).await?;
        if let RecordKind::Post(post) = &signed.record().kind {
            self.provide_attachments(&post.attachments).await;
        }
        Ok(Response::Record { id: signed.id().to_string() })
    }

    pub(super) async fn follow(&self, id: &str, follow: bool) -> Reply {
        let target = self.person(id)?;
        let me = self.inner.me;
        if target == me {
            return Err(ApiError::refused("you cannot follow or unfollow yourself"));
        }
        let following = self.inner.store.is_following(&me, &target)?;
        if following != follow {
            let kind = if follow {
                RecordKind::Follow { target }
            } else {
                RecordKind::Unfollow { target }
            };
            self.publish_own(kind).await?;
            if follow {
                self.own_follow_made_mutual(target);
            }
        }
        let topic = Topic::Author(target).to_string();
        if follow {
            self.inner.net.subscribe(topic).await?;
            // Reach the author (through the DHT if need be), then backfill their earlier
            // records from whoever has them.
            let node = self.clone();
            self.spawn(async move {
                for peer in node.inner.net.peers().await.unwrap_or_default() {
                    node.sync_author(peer.peer, target).await;
                }
                // A connection made now syncs on its own (sync on connect).
                node.reach(target).await;
            });
        } else {
            self.inner.net.unsubscribe(topic).await?;
        }
        Ok(Response::Ok)
    }

    fn following(&self) -> Reply {
        let store = &self.inner.store;
        let me = self.inner.me;
        let mut entries = Vec::new();
        for who in store.following(&me)? {
            let mutual = store.is_following(&who, &me)?;
            entries.push(view::follow_entry(store, &who, mutual));
        }
        Ok(Response::Follows { entries })
    }

    fn followers(&self) -> Reply {
        let store = &self.inner.store;
        let me = self.inner.me;
        let mut entries = Vec::new();
        for who in store.followers(&me)? {
            let mutual = store.is_following(&me, &who)?;
            entries.push(view::follow_entry(store, &who, mutual));
        }
        Ok(Response::Follows { entries })
    }

    async fn subscribe(&self, tag: &str, on: bool) -> Reply {
        let tag = parse_tag(tag)?;
        let store = &self.inner.store;
        if on {
            store.subscribe(&tag)?;
        } else {
            store.unsubscribe(&tag)?;
        }
        store.flush().await?;
        let topic = Topic::Tag(tag.clone()).to_string();
        if on {
            self.inner.net.subscribe(topic).await?;
            let node = self.clone();
            self.spawn(async move {
                for peer in node.inner.net.peers().await.unwrap_or_default() {
                    node.sync_tag(peer.peer, &tag).await;
                }
                node.drive(crate::core::Input::TagInterest { tag, on: true }).await;
            });
        } else {
            self.inner.net.unsubscribe(topic).await?;
            // No longer renewed in the DHT: records peers already hold expire on their own.
            self.drive(crate::core::Input::TagInterest { tag, on: false }).await;
        }
        Ok(Response::Ok)
    }

    fn tags(&self) -> Reply {
        let tags = self.inner.store.subscriptions()?;
        Ok(Response::Tags { tags: tags.iter().map(|t| t.to_string()).collect() })
    }

    async fn profile_set(&self, name: Option<String>, bio: Option<String>) -> Reply {
        if name.is_none() && bio.is_none() {
            return Err(ApiError::invalid("nothing to set: give --name and/or --bio"));
        }
        let current = view::profile_of(&self.inner.store, &self.inner.me)?;
        let kind = RecordKind::Profile {
            name: name.or(current.name).unwrap_or_default(),
            bio: bio.or(current.bio).unwrap_or_default(),
        };
        self.publish_own(kind).await?;
        self.profile_show(None)
    }

    fn profile_show(&self, id: Option<&str>) -> Reply {
        let who = match id {
            Some(id) => self.person(id)?,
            None => self.inner.me,
        };
        Ok(Response::Profile(view::profile_of(&self.inner.store, &who)?))
    }

    /// Publishes the name from `kith init --name` when no profile of ours exists yet.
    pub(super) async fn publish_initial_profile(&self, name: &str) {
        match self.inner.store.profile(&self.inner.me) {
            Ok(None) => {
                let kind = RecordKind::Profile { name: name.to_owned(), bio: String::new() };
                if let Err(error) = self.publish_own(kind).await {
                    tracing::warn!(%error, "cannot publish the initial profile");
                }
            }
            Ok(Some(_)) => {}
            Err(error) => tracing::warn!(%error, "cannot read own profile"),
        }
    }
}
