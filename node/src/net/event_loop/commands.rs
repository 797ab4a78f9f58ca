//! Commands from the node to the swarm task: dial, publish, subscribe, report verdicts,
//! requests and replies, DHT lookups, and the peer list and counters for `status`.

use std::collections::{HashMap, HashSet};

use libp2p::{
    gossipsub,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        DialError,
    },
    Multiaddr, PeerId,
};

use super::{DialReply, EventLoop};
use crate::net::{behaviour, peer_of, Command, NetError, PeerInfo, Responder, Stats, Verdict};

impl EventLoop {
    pub(super) fn handle_command(&mut self, command: Command) {
        match command {
            Command::Dial { addr, reply } => self.handle_dial(addr, reply),
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.handle_publish(topic, data));
            }
            Command::Subscribe { topic, reply } => {
                let _ = reply.send(self.handle_subscribe(&topic));
            }
            Command::Unsubscribe { topic, reply } => {
                self.mends.unsubscribed(&topic);
                let topic = gossipsub::IdentTopic::new(topic);
                let _ = reply.send(self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic));
            }
            Command::Report { id, source, verdict } => self.handle_report(&id, &source, verdict),
            Command::Missed { topics } => self.handle_missed(topics),
            Command::Request { proto, peer, addrs, bytes, reply } => {
                self.note_used(peer);
                let id = self.rr(proto).send_request_with_addresses(&peer, bytes, addrs);
                self.pending_requests.insert((proto, id), reply);
            }
            Command::Respond { channel: Responder(proto, channel), bytes } => {
                if self.rr(proto).send_response(channel, bytes).is_err() {
                    tracing::debug!(?proto, "reply not sent: the peer went away");
                }
            }
            Command::FindPeer { peer, reply } => self.start_find(peer, reply),
            Command::Provide { key } => {
                if let Err(error) = self.swarm.behaviour_mut().kad.start_providing(key.into()) {
                    tracing::debug!(%error, "cannot provide in the DHT");
                }
            }
            Command::StopProviding { key } => {
                self.swarm.behaviour_mut().kad.stop_providing(&key.into());
            }
            Command::SetLimits { limits } => self.swarm.behaviour_mut().gate.set_limits(limits),
            Command::Outsiders { topics, most, reply } => {
                let _ = reply.send(self.pick_outsiders(&topics, most));
            }
            Command::FindProviders { key, reply } => {
                let id = self.swarm.behaviour_mut().kad.get_providers(key.into());
                self.pending_providers.insert(id, (Vec::new(), reply));
            }
            Command::DialPeer { peer } => {
                if !self.swarm.is_connected(&peer) {
                    if let Err(error) = self.swarm.dial(DialOpts::peer_id(peer).build()) {
                        tracing::debug!(%peer, %error, "dial by id failed");
                    }
                }
            }
            Command::Block { peer, blocked } => {
                let list = &mut self.swarm.behaviour_mut().blocked;
                if blocked {
                    list.block_peer(peer);
                } else {
                    list.unblock_peer(peer);
                }
            }
            Command::IsConnected { peer, reply } => {
                let _ = reply.send(self.swarm.is_connected(&peer));
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peers());
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Command::TopicPeers { topic, reply } => {
                let hash = gossipsub::IdentTopic::new(topic).hash();
                let gs = &self.swarm.behaviour().gossipsub;
                let peers =
                    gs.all_peers().filter(|(_, t)| t.contains(&&hash)).map(|(p, _)| *p).collect();
                let _ = reply.send(peers);
            }
            Command::MeshPeers { topic, reply } => {
                let hash = gossipsub::IdentTopic::new(topic).hash();
                let gs = &self.swarm.behaviour().gossipsub;
                let _ = reply.send(gs.mesh_peers(&hash).copied().collect());
            }
            // Handled in `run`.
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn handle_dial(&mut self, addr: Multiaddr, reply: DialReply) {
        let target = peer_of(&addr);
        if let Some(peer) = target {
            if peer == *self.swarm.local_peer_id() {
                let _ = reply.send(Err(NetError::Dial("that is this node's own address".into())));
                return;
            }
            if self.swarm.is_connected(&peer) {
                self.dialled_on_purpose.insert(peer);
                let _ = reply.send(Ok(peer));
                return;
            }
        }
        // Dialled even while another dial of the same peer is under way: that one may be
        // to an address the peer no longer listens at (a request's dial to the addresses
        // remembered before the peer restarted), and the address given here is news.
        let opts = match target {
            Some(peer) => DialOpts::peer_id(peer)
                .condition(PeerCondition::Disconnected)
                .addresses(vec![addr])
                .build(),
            None => DialOpts::unknown_peer_id().address(addr).build(),
        };
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(id, reply);
            }
            Err(DialError::DialPeerConditionFalse(_)) => {
                // Connected meanwhile (the condition is `Disconnected`): reachable. Never
                // answered for a dial that is merely under way: that would report a
                // connection that may never come.
                let _ = match target {
                    Some(peer) => reply.send(Ok(peer)),
                    None => reply.send(Err(NetError::Dial("already dialling".into()))),
                };
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Dial(e.to_string())));
            }
        }
    }

    fn handle_publish(&mut self, topic: String, data: Vec<u8>) -> Result<usize, NetError> {
        let topic = gossipsub::IdentTopic::new(topic);
        let hash = topic.hash();
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(_) => {
                let gs = &self.swarm.behaviour().gossipsub;
                Ok(gs.all_peers().filter(|(_, topics)| topics.contains(&&hash)).count())
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic)
            | Err(gossipsub::PublishError::Duplicate) => Ok(0),
            Err(e) => Err(NetError::Gossip(e.to_string())),
        }
    }

    fn handle_subscribe(&mut self, name: &str) -> Result<bool, NetError> {
        let topic = gossipsub::IdentTopic::new(name);
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        // Per-topic scores are kept only for registered topics: register before joining.
        gs.set_topic_params(topic.clone(), behaviour::topic_score_params())
            .map_err(|e| NetError::Gossip(e.to_string()))?;
        let subscribed = gs.subscribe(&topic).map_err(|e| NetError::Gossip(e.to_string()))?;
        self.mends.subscribed(name, std::time::Instant::now());
        Ok(subscribed)
    }

    pub(super) fn handle_report(
        &mut self,
        id: &gossipsub::MessageId,
        source: &PeerId,
        verdict: Verdict,
    ) {
        let acceptance = match verdict {
            Verdict::Accept | Verdict::Credit => gossipsub::MessageAcceptance::Accept,
            Verdict::Reject => gossipsub::MessageAcceptance::Reject,
            Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
        };
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        // Credited only if still in gossipsub's cache, as its own P2 credit would be.
        if gs.report_message_validation_result(id, source, acceptance) && verdict == Verdict::Credit
        {
            let credit = self.credit.add(*source, std::time::Instant::now());
            gs.set_application_score(source, credit);
        }
    }

    /// Hands gossipsub the application scores that changed: first-delivery credit decayed
    /// to now, lots drawn again.
    pub(super) fn decay_credit(&mut self) {
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        let (most, rng) = (self.mesh_lot, &mut self.lot_rng);
        let scores = self.credit.scores(std::time::Instant::now(), || draw_lot(most, rng));
        for (peer, score) in scores {
            gs.set_application_score(&peer, score);
        }
    }

    /// Connected peers that take the topic of `hash`, outside this node's mesh of it and
    /// not in `except`.
    fn outsiders(&self, hash: &gossipsub::TopicHash, except: &HashSet<PeerId>) -> Vec<PeerId> {
        let gs = &self.swarm.behaviour().gossipsub;
        let mesh: HashSet<&PeerId> = gs.mesh_peers(hash).collect();
        gs.all_peers()
            .filter(|(peer, topics)| {
                topics.contains(&hash) && !mesh.contains(peer) && !except.contains(peer)
            })
            .map(|(peer, _)| *peer)
            .collect()
    }

    /// For each of `topics`, up to `most` peers that take it and are outside this node's
    /// mesh of it, at random, peers picked for an earlier topic first. On a topic this
    /// node has no mesh of (one it does not take), gossipsub sent its record to D of
    /// those peers (its fanout, which it does not show): none is picked unless there are
    /// more than D, so that a probe is not spent on peers that surely have the record.
    fn pick_outsiders(&mut self, topics: &[String], most: usize) -> Vec<Vec<PeerId>> {
        use rand_core::Rng;
        let fanout = crate::net::gossip_tuning().mesh_n;
        let mut picked_any: HashSet<PeerId> = HashSet::new();
        let mut out = Vec::with_capacity(topics.len());
        let mut asked = 0;
        for topic in topics {
            let hash = gossipsub::IdentTopic::new(topic.as_str()).hash();
            let outside = self.outsiders(&hash, &HashSet::new());
            let meshless = self.swarm.behaviour().gossipsub.mesh_peers(&hash).next().is_none();
            if meshless && outside.len() <= fanout {
                out.push(Vec::new());
                continue;
            }
            // Those picked already first, each part in a random order.
            let mut picked = Vec::new();
            for again in [true, false] {
                let mut part: Vec<PeerId> =
                    outside.iter().filter(|p| picked_any.contains(p) == again).copied().collect();
                while picked.len() < most && !part.is_empty() {
                    let at = (self.lot_rng.next_u64() % part.len() as u64) as usize;
                    picked.push(part.swap_remove(at));
                }
            }
            asked += picked.iter().filter(|p| !picked_any.contains(p)).count() as u64;
            picked_any.extend(picked.iter().copied());
            out.push(picked);
        }
        if asked > 0 {
            *self.events_seen.entry("probe: peers outside the mesh asked").or_default() += asked;
        }
        out
    }

    /// Records of `topics` came by sync (the youngest ..= the oldest age, ms): for each
    /// topic whose mesh gossip missed them in ([`crate::net::mend::Mends::missed`]), the
    /// records go to the mesh (its other nodes likely missed them too), and if the topic
    /// is due a mend ([`crate::net::mend::Mends::due`]), one peer that takes the topic and
    /// is outside its mesh is boosted, so that the next round of opportunistic grafting
    /// grafts it (`mend.rs`).
    fn handle_missed(&mut self, topics: crate::core::MissedTopics) {
        use rand_core::Rng;
        let now = std::time::Instant::now();
        for crate::core::MissedTopic { topic, ages, records } in topics {
            if !self.mends.missed(&topic, &ages, now) {
                continue;
            }
            let hash = gossipsub::IdentTopic::new(topic.as_str()).hash();
            if self.swarm.behaviour().gossipsub.mesh_peers(&hash).next().is_none() {
                // No mesh to pass them on to or to mend: nobody who takes the topic was
                // connected.
                continue;
            }
            self.pass_on(&topic, records);
            if self.credit.boosted(now).count() >= crate::net::mend::MAX_BOOSTED
                || !self.mends.due(&topic, &ages, now)
            {
                continue;
            }
            let boosted: HashSet<PeerId> = self.credit.boosted(now).copied().collect();
            let outside = self.outsiders(&hash, &boosted);
            if outside.is_empty() {
                continue;
            }
            let peer = outside[(self.lot_rng.next_u64() % outside.len() as u64) as usize];
            self.mends.mended(&topic, now);
            let score = self.credit.boost(peer, now + self.mends.hold(), now);
            self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, score);
            *self.events_seen.entry("mesh mend: a record came by sync, not gossip").or_default() +=
                1;
            let topic = crate::text::line(&topic);
            tracing::info!(%topic, %peer, "a record came by sync, not gossip: mending the mesh");
        }
    }

    /// Publishes `records` (others' records that came by sync and that gossip missed
    /// here) on `topic`, as if they had just come by gossip: a record this node's mesh
    /// already passed on is a duplicate to gossipsub and goes nowhere.
    fn pass_on(&mut self, topic: &str, records: Vec<Vec<u8>>) {
        let mut sent = 0;
        for data in records {
            let ident = gossipsub::IdentTopic::new(topic);
            match self.swarm.behaviour_mut().gossipsub.publish(ident, data) {
                Ok(_) => sent += 1,
                Err(gossipsub::PublishError::Duplicate) => {}
                Err(error) => {
                    tracing::debug!(%error, "a record gossip missed not passed on");
                }
            }
        }
        if sent > 0 {
            *self
                .events_seen
                .entry("mesh mend: records that came by sync passed on")
                .or_default() += sent;
            let topic = crate::text::line(topic);
            tracing::info!(%topic, records = sent, "records that came by sync passed on to the mesh");
        }
    }

    /// `peer` connected (its first connection): it draws its lot, if lots are on.
    pub(super) fn meet(&mut self, peer: PeerId) {
        if self.mesh_lot <= 0.0 {
            return;
        }
        let lot = draw_lot(self.mesh_lot, &mut self.lot_rng);
        let score = self.credit.meet(peer, lot, std::time::Instant::now());
        self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, score);
    }

    fn peers(&self) -> Vec<PeerInfo> {
        let gs = &self.swarm.behaviour().gossipsub;
        let mut seen = HashMap::new();
        for peer in self.swarm.connected_peers() {
            seen.insert(*peer, gs.peer_score(peer));
        }
        let mut out: Vec<PeerInfo> = Vec::new();
        for (peer, score) in seen {
            let addr = self.remote_addrs.get(&peer).cloned().unwrap_or_else(Multiaddr::empty);
            let relayed = self
                .connections
                .get(&peer)
                .is_some_and(|c| !c.is_empty() && c.values().all(|c| c.relayed));
            out.push(PeerInfo { peer, addr, score, relayed });
        }
        // By the id as people see it; each id is formatted once (base58 is not cheap).
        out.sort_by_cached_key(|p| p.peer.to_string());
        out
    }

    fn stats(&self) -> Stats {
        let gs = &self.swarm.behaviour().gossipsub;
        let mut topics: Vec<String> = gs.topics().map(|t| t.to_string()).collect();
        topics.sort();
        let mesh: std::collections::HashSet<&PeerId> = gs.all_mesh_peers().collect();
        let graylist = gossipsub::PeerScoreThresholds::default().graylist_threshold;
        let scores: Vec<f64> =
            self.swarm.connected_peers().filter_map(|p| gs.peer_score(p)).collect();
        let gossip = super::super::behaviour::gossip_counters(&self.gossip_metrics);
        let gossip_copies = gossip.get("copies").copied().unwrap_or(0);
        let gossip_first = gossip.get("first").copied().unwrap_or(0);
        Stats {
            topics,
            peers: self.swarm.connected_peers().count(),
            mesh_peers: mesh.len(),
            graylisted: scores.iter().filter(|s| **s < graylist).count(),
            penalised: scores.iter().filter(|s| **s < 0.0).count(),
            gossip_rate_limited: self.gossip_rate_limited,
            gossip_overflow: self.gossip_overflow,
            reachability: self.reachability(),
            public_addr: self.swarm.behaviour().autonat.public_address().cloned(),
            relay_addrs: self.reservations.values().filter_map(|r| r.addr.clone()).collect(),
            relay_mode: self.relay_mode,
            relaying_for: self.relaying_for.len(),
            relay_refused: self.relay_refused_count,
            holepunch_ok: self.holepunch_ok,
            holepunch_failed: self.holepunch_failed,
            connections_refused: self.swarm.behaviour().gate.refused,
            connections_evicted: self.swarm.behaviour().gate.evicted,
            gossip_copies,
            gossip_duplicates: gossip_copies.saturating_sub(gossip_first),
            events: {
                let mut events = self.events_seen.clone();
                let spares = self.swarm.behaviour().gossipsub.spares_closed();
                if spares > 0 {
                    events.insert("spare connection closed as it opened", spares);
                }
                events
            },
            gossip,
        }
    }
}

/// A lot: a uniform draw in [0, `most`).
fn draw_lot(most: f64, rng: &mut rand_pcg::Pcg64Mcg) -> f64 {
    use rand_core::Rng;
    most * crate::net::tuning::unit(rng.next_u64())
}
