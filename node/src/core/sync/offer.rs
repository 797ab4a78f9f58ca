//! Offers (our recent records to a peer that subscribed to a topic they went to) and
//! peers' sync requests (an offer is stored as far as it holds its sender's records;
//! a question is handed to the driver to serve within its budget).

use kith_protocol::{
    sync::{Query, SyncRequest, MAX_OFFER_RECORDS},
    AuthorId, Topic,
};
use libp2p::PeerId;

use super::{serve::empty, Asked, Sync};
use crate::{
    core::{Context, Effect, ReplyId},
    store::Store,
};

/// Own records younger than this are offered to a peer that subscribes to their topic.
pub const OFFER_WINDOW_MS: u64 = 10 * 60 * 1000;

impl Sync {
    /// A peer subscribed to `topic`: offer it our recent records that went there. On its
    /// own author topic the peer is that person's node: if we follow them, our follow
    /// goes too, however old, so that they learn of it without fetching our log (a node
    /// no longer pulls a subscriber's whole log to find their follow). The answer to an
    /// offer is not waited for.
    pub(crate) fn handle_subscribed(
        &mut self,
        cx: &Context,
        peer: PeerId,
        topic: &str,
        now: u64,
    ) -> Vec<Effect> {
        let Some(parsed) = Topic::parse(topic) else { return Vec::new() };
        let mut offer = recent_for_topic(cx, topic, now);
        let owner = AuthorId::from_peer_id(&peer).ok().filter(|a| parsed == Topic::Author(*a));
        if let Some(proof) =
            owner.and_then(|o| crate::core::dm::follow_proof(&cx.store, &cx.me, &o))
        {
            if !offer.contains(&proof) {
                offer.truncate(MAX_OFFER_RECORDS - 1);
                offer.push(proof);
            }
        }
        if offer.is_empty() {
            return Vec::new();
        }
        match (SyncRequest { query: Query::Offer { records: offer } }).to_bytes() {
            Ok(bytes) => vec![Effect::Query { peer, bytes, pull: None }],
            Err(error) => {
                tracing::debug!(%peer, %error, "cannot encode an offer");
                Vec::new()
            }
        }
    }

    /// A sync request from `from`: a malformed one is answered with nothing; an offer
    /// is stored as far as it holds the offerer's own records (anything else is refused,
    /// so an offer cannot plant other authors' records) and answered with nothing; a
    /// question goes to the driver to serve ([`Effect::Serve`]).
    pub(crate) fn handle_request(
        &mut self,
        cx: &mut Context,
        from: PeerId,
        bytes: &[u8],
        reply: ReplyId,
        now: u64,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let query = match SyncRequest::from_bytes(bytes) {
            Ok(request) => request.query,
            Err(error) => {
                tracing::info!(peer = %from, %error, "malformed sync request");
                respond_empty(reply, &mut effects);
                return effects;
            }
        };
        if let Query::Offer { records } = query {
            if let Ok(offerer) = AuthorId::from_peer_id(&from) {
                self.ingest_records(cx, &records, &Asked::Author(offerer), now, &mut effects);
            }
            respond_empty(reply, &mut effects);
            return effects;
        }
        // A digest that shows the asker ahead: pull from it now rather than at this
        // node's next round, which may be minutes away (`rounds.rs`); a probe's tags
        // too (`probe.rs`).
        if let Query::Digest { authors, since, tags } = &query {
            let ahead = ahead(cx, authors) || super::probe::tags_ahead(cx, *since, tags, now);
            if ahead && self.rounds.peer_ahead(from, now) {
                effects.push(Effect::SyncWith(from));
            }
        }
        let friend = is_friend(&cx.store, &cx.me, &from);
        effects.push(Effect::Serve { reply, peer: from, query: Box::new(query), friend });
        effects
    }
}

/// Whether a digest's authors (each with the last seq its sender holds without gaps)
/// show that the sender holds records of an author this node follows past the last
/// one this node holds.
fn ahead(cx: &Context, authors: &[(AuthorId, u64)]) -> bool {
    authors.iter().any(|(author, seq)| {
        let latest = cx.store.latest(author).ok().flatten().map_or(0, |(latest, _)| latest);
        *seq > latest && cx.store.is_following(&cx.me, author).unwrap_or(false)
    })
}

fn respond_empty(reply: ReplyId, effects: &mut Vec<Effect>) {
    if let Ok(bytes) = empty().to_bytes() {
        effects.push(Effect::Respond { reply, bytes });
    }
}

/// Whether `peer` is the node of someone `me` follows or is followed by.
pub fn is_friend(store: &Store, me: &AuthorId, peer: &PeerId) -> bool {
    let Ok(them) = AuthorId::from_peer_id(peer) else { return false };
    store.is_following(me, &them).unwrap_or(false) || store.is_following(&them, me).unwrap_or(false)
}

/// Our own records of the last [`OFFER_WINDOW_MS`] that were published to `topic`,
/// newest first.
fn recent_for_topic(cx: &Context, topic: &str, now: u64) -> Vec<Vec<u8>> {
    let (store, me) = (&cx.store, &cx.me);
    let Ok(Some((latest, _))) = store.latest(me) else { return Vec::new() };
    let from = latest.saturating_sub(4 * MAX_OFFER_RECORDS as u64);
    let cutoff = now.saturating_sub(OFFER_WINDOW_MS);
    let mut out = Vec::new();
    for rec in store.author_log(me, from, 4 * MAX_OFFER_RECORDS).unwrap_or_default().iter().rev() {
        if rec.record.timestamp < cutoff || out.len() == MAX_OFFER_RECORDS {
            break;
        }
        if crate::core::feeds::topics_for(store, &rec.record).iter().any(|t| t == topic) {
            if let Ok(Some(bytes)) = store.get_bytes(&rec.id) {
                out.push(bytes);
            }
        }
    }
    out
}
