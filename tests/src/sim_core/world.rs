//! The simulated world: nodes (a core over a memory store each), the network, the clock
//! (a queue of events) and the scenario.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use kith_node::{
    core::{sync::Pull, Answer, Core, Effect, FlushId, GossipMessage, Input},
    store::{MemoryImage, Store},
};
use kith_protocol::{AuthorId, Keypair, RecordId, RecordKind, Topic};
use libp2p::{gossipsub::MessageId, PeerId};

use super::{Config, SimRng};

mod dm;
mod event;
mod group;
mod mailbox;
mod scenario;
#[cfg(test)]
mod script;
mod sync;
pub(super) use dm::{parse_id, DmTruth};
use event::{Event, Queued};
pub(super) use group::{members_of, GroupTruth};

/// The simulated clock starts here (ms since the Unix epoch: 2026-01-01), so records
/// carry plausible timestamps.
pub(super) const EPOCH_MS: u64 = 1_767_225_600_000;

/// Chances per thousand, three times per person, to go offline once.
const OFFLINE_PER_MILLE: u64 = 150;
/// How long a person stays offline, on average, ms.
const OFFLINE_MEAN_MS: u64 = 120_000;

/// Friends each person makes at the start (mutual follows; more come by following back).
const FRIENDS: usize = 2;

/// Hashtags people use.
const TAGS: [&str; 8] = ["rust", "p2p", "cats", "news", "music", "art", "food", "kith"];

/// One person's node.
pub(super) struct SimNode {
    pub(super) keys: Keypair,
    pub(super) me: AuthorId,
    peer: PeerId,
    /// The running core; `None` while crashed.
    core: Option<Core>,
    /// What survives while crashed.
    image: Option<MemoryImage>,
    /// Reachable on the network.
    online: bool,
    /// Bumped by each crash: flushes asked for before it never complete.
    epoch: u64,
    /// Gossip topics subscribed to.
    topics: BTreeSet<String>,
    /// Own posts published (ground truth: targets for deletes).
    posts: Vec<RecordId>,
    next_answer: u64,
}

impl SimNode {
    /// The node's store (`None` while crashed).
    pub(super) fn store(&self) -> Option<&Store> {
        self.core.as_ref().map(Core::store)
    }
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub events: u64,
    pub published: u64,
    pub delivered: u64,
    pub lost: u64,
    pub crashes: u64,
    pub messages: u64,
    /// Records published on gossip (also those nobody asked for).
    pub publications: u64,
    /// Deposits a mailbox accepted (messages and receipts).
    pub deposits: u64,
    /// Direct messages their recipients stored from a mailbox.
    pub mailbox_deliveries: u64,
    /// Group and circle requests people made.
    pub group_actions: u64,
    /// Group messages sent (answered `Sent`).
    pub group_messages: u64,
    /// Circle posts published.
    pub circle_posts: u64,
}

/// Every node, the network and the clock.
pub struct World {
    pub(super) nodes: Vec<SimNode>,
    by_peer: BTreeMap<PeerId, usize>,
    by_author: BTreeMap<AuthorId, usize>,
    sync_waiting: sync::SyncWaiting,
    subscribers: BTreeMap<String, BTreeSet<usize>>,
    queue: BinaryHeap<Queued>,
    seq: u64,
    now: u64,
    rng: SimRng,
    config: Config,
    /// The side of each node while a partition lasts.
    sides: Option<Vec<bool>>,
    /// Posts published by anyone (targets for replies and reactions).
    posts: Vec<RecordId>,
    settled: bool,
    stats: Stats,
    /// Direct messages: the ground truth and what went wrong during the run.
    pub(super) dms: DmTruth,
    /// Mailbox traffic in flight.
    mailboxes: mailbox::MailboxTraffic,
    /// Groups and circles: the ground truth.
    pub(super) groups: GroupTruth,
}

impl World {
    /// The nodes of `config`, with their first actions and the network's troubles queued.
    pub fn new(config: &Config) -> Self {
        let rng = SimRng::new(config.seed);
        let mut nodes = Vec::with_capacity(config.nodes);
        let mut by_peer = BTreeMap::new();
        let mut by_author = BTreeMap::new();
        for i in 0..config.nodes {
            let mut secret = [0u8; 32];
            secret[..8].copy_from_slice(&config.seed.to_le_bytes());
            secret[8..16].copy_from_slice(&(i as u64).to_le_bytes());
            let keys = Keypair::from_secret_bytes(blake3::hash(&secret).as_bytes());
            let me = keys.id();
            let peer = me.to_peer_id().expect("an ed25519 id");
            let store = Store::open_memory().expect("a memory store opens");
            by_peer.insert(peer, i);
            by_author.insert(me, i);
            nodes.push(SimNode {
                core: Some(Core::new(keys.clone(), store)),
                keys,
                me,
                peer,
                image: None,
                online: true,
                epoch: 0,
                topics: BTreeSet::new(),
                posts: Vec::new(),
                next_answer: 0,
            });
        }
        let mut world = Self {
            nodes,
            by_peer,
            by_author,
            sync_waiting: sync::SyncWaiting::new(),
            subscribers: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            now: EPOCH_MS,
            rng,
            config: config.clone(),
            sides: None,
            posts: Vec::new(),
            settled: false,
            stats: Stats::default(),
            dms: DmTruth::default(),
            mailboxes: mailbox::MailboxTraffic::default(),
            groups: GroupTruth::default(),
        };
        world.plan();
        world
    }

    /// Queues everyone's first action and the network's troubles.
    fn plan(&mut self) {
        let (n, end) = (self.nodes.len(), self.config.seconds * 1000);
        for i in 0..n {
            let own = Topic::Author(self.nodes[i].me).to_string();
            self.subscribe(i, own);
            if self.config.scripted {
                continue;
            }
            let first = self.rng.below(self.config.act_every_s * 1000);
            self.at(first, Event::Act(i));
            // About two people in five go offline once or more (then messages to them
            // go through their mailboxes), one in ten crashes once.
            for _ in 0..3 {
                if self.rng.chance(OFFLINE_PER_MILLE) {
                    let at = self.rng.below(end);
                    self.at(at, Event::Offline(i));
                }
            }
            if self.rng.chance(100) {
                let at = self.rng.below(end);
                self.at(at, Event::Crash(i));
            }
        }
        if self.config.scripted {
            return;
        }
        // Everyone starts with a few friends (mutual follows): people to write to, and
        // mailboxes to hold what cannot be delivered at once.
        for i in 0..n {
            for _ in 0..FRIENDS {
                let j = self.rng.index(n);
                if j != i {
                    self.befriend(i, j);
                }
            }
        }
        for _ in 0..2 {
            let at = self.rng.below(end);
            self.at(at, Event::Partition);
        }
        self.at(end, Event::Settle);
    }

    /// Queues `event` `after` ms from now.
    fn at(&mut self, after: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Queued { at: self.now + after, seq: self.seq, event });
    }

    /// Runs until nothing is left to happen.
    ///
    /// After the scenario a node may still publish (its device announcement, when its
    /// outbox drains) once its followers have caught up; a lost gossip copy of it is
    /// fetched by the daemon's periodic sync rounds. So here: when the queue drains, every
    /// node catches up once more, until a round sees nothing new published.
    pub fn run(&mut self) {
        let mut round = None;
        loop {
            while let Some(Queued { at, event, .. }) = self.queue.pop() {
                self.now = at;
                self.stats.events += 1;
                self.handle(event);
            }
            if !self.settled || round == Some(self.stats.publications) {
                break;
            }
            round = Some(self.stats.publications);
            for i in 0..self.nodes.len() {
                self.catch_up(i);
            }
        }
    }

    /// The simulated time now, ms.
    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        Stats {
            deposits: self.mailboxes.accepted,
            mailbox_deliveries: self.mailboxes.delivered,
            ..self.stats
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Act(i) => self.act(i),
            Event::Deliver { to, from, topic, bytes } => self.deliver(to, from, topic, bytes),
            Event::Flush { node, flush, epoch } => self.flush(node, flush, epoch),
            Event::Sync { to, from, what } => self.start_pull(to, from, what),
            Event::SyncAsk { to, from, epoch, bytes, pull } => {
                self.sync_ask(to, from, epoch, bytes, pull);
            }
            Event::SyncReply { to, epoch, pull, result } => {
                self.sync_reply(to, epoch, pull, result)
            }
            Event::DmArrive { to, from, epoch, message, bytes, proto } => {
                self.dm_arrive(to, from, epoch, message, bytes, proto);
            }
            Event::DmReply { to, epoch, peer, message, result } => {
                self.dm_reply(to, epoch, peer, message, result);
            }
            Event::Timer { node, timer, epoch } => self.dm_timer(node, timer, epoch),
            Event::Ask { to, from, epoch, proto, bytes, purpose } => {
                self.asked(to, from, (epoch, proto), bytes, purpose);
            }
            Event::Answer { to, epoch, purpose, result } => {
                self.answered(to, epoch, purpose, result);
            }
            Event::Collect { node, mailbox, epoch } => self.collect_due(node, mailbox, epoch),
            Event::Offline(i) => {
                self.nodes[i].online = false;
                let back = self.rng.exp(OFFLINE_MEAN_MS);
                self.at(back, Event::Online(i));
            }
            Event::Online(i) => self.come_back(i),
            Event::Crash(i) => self.crash(i),
            Event::Restart(i) => self.restart(i),
            Event::Partition => {
                let n = self.nodes.len();
                self.sides = Some((0..n).map(|_| self.rng.chance(500)).collect());
                let lasts = self.rng.exp(60_000);
                self.at(lasts, Event::Heal);
            }
            Event::Heal => {
                self.sides = None;
                self.connect_all();
            }
            Event::Settle => self.settle(),
        }
    }

    /// Whether a message from `a` can reach `b` now.
    fn reachable(&self, a: usize, b: usize) -> bool {
        let (x, y) = (&self.nodes[a], &self.nodes[b]);
        x.online
            && y.online
            && x.core.is_some()
            && y.core.is_some()
            && self.sides.as_ref().is_none_or(|s| s[a] == s[b])
    }

    fn subscribe(&mut self, i: usize, topic: String) {
        if self.nodes[i].topics.insert(topic.clone()) {
            self.subscribers.entry(topic).or_default().insert(i);
        }
    }

    /// Hands `input` to node `i`'s core and carries out what it asks for.
    fn input(&mut self, i: usize, input: Input) {
        let now = self.now;
        let Some(core) = self.nodes[i].core.as_mut() else { return };
        let mut effects = core.handle(input, now, self.rng.pcg());
        self.order_group_asks(&mut effects);
        for effect in effects {
            self.effect(i, effect);
        }
    }

    fn effect(&mut self, i: usize, effect: Effect) {
        match effect {
            Effect::Publish { topic, bytes } => {
                self.stats.publications += 1;
                self.gossip(i, &topic, &bytes);
            }
            Effect::Flush(flush) => {
                let (epoch, delay) = (self.nodes[i].epoch, 1 + self.rng.below(20));
                self.at(delay, Event::Flush { node: i, flush, epoch });
            }
            Effect::FillGap { peer, author } => {
                if let Some(&from) = self.by_peer.get(&peer) {
                    self.start_pull(i, from, Pull::Gap(author));
                }
            }
            Effect::Query { peer, bytes, pull } => self.sync_query(i, peer, bytes, pull),
            Effect::Serve { reply, query, friend, .. } => self.sync_serve(i, reply, *query, friend),
            Effect::Respond { reply, bytes } if self.is_sync_reply(i, reply) => {
                self.sync_respond(i, reply, bytes);
            }
            Effect::Respond { reply, bytes } if self.is_mailbox_reply(i, reply) => {
                self.mailbox_respond(i, reply, bytes);
            }
            Effect::Answer { result: Ok(Answer::Published(record)), answer } => {
                self.stats.published += 1;
                match &record.record().kind {
                    RecordKind::Private(_) => self.circle_posted(i, answer, record.id()),
                    RecordKind::Post(_) => {
                        self.posts.push(record.id());
                        self.nodes[i].posts.push(record.id());
                    }
                    RecordKind::Follow { target } => self.followed(i, *target),
                    _ => {}
                }
            }
            Effect::Answer { result: Ok(Answer::MsgSent { id, status }), .. } => {
                self.dm_answered(*id.as_bytes(), status);
            }
            Effect::Deliver { peer, message, bytes, proto, .. } => {
                self.dm_deliver(i, peer, message, bytes, proto);
            }
            Effect::Respond { reply, bytes } => self.dm_respond(i, reply, bytes),
            Effect::Deposit { peer, message, envelope, mailboxes } => {
                self.deposit_message(i, peer, message, envelope, &mailboxes);
            }
            Effect::GroupDeposit { peer, n, envelope, mailboxes } => {
                self.deposit_group(i, peer, n, envelope, &mailboxes);
            }
            Effect::CollectMailboxes => self.collect_now(i),
            Effect::Receipt { peer, request, deposit, mailboxes, key } => {
                self.send_receipt(i, peer, (request, deposit), mailboxes, key);
            }
            Effect::MailboxAck { mailbox, ids } => self.mailbox_ack(i, mailbox, ids),
            Effect::Received { message, .. } => self.dm_received(i, message),
            Effect::Notified(n) => self.notified(i, &n),
            Effect::Schedule { at, timer } => {
                let epoch = self.nodes[i].epoch;
                self.at(at.saturating_sub(self.now), Event::Timer { node: i, timer, epoch });
            }
            Effect::Answer { answer, result: Ok(Answer::Group(done)) } => {
                self.group_answered(i, answer, Some(done));
            }
            Effect::Answer { answer, result: Err(_) } => self.group_answered(i, answer, None),
            Effect::GroupDeliver { peer, n, bytes } => self.group_deliver(i, peer, n, bytes),
            Effect::GroupAsk { peer, group, bytes } => self.group_ask(i, peer, group, bytes),
            Effect::Answer { .. }
            | Effect::Verdict { .. }
            | Effect::Stored(_)
            | Effect::LivePost(_) => {}
            // The simulated network decides who is connected to whom by itself.
            Effect::Dial { .. }
            | Effect::DialPeer(_)
            | Effect::Reach(_)
            | Effect::FindTagPeers(_)
            | Effect::StopProviding(_)
            | Effect::Friends { .. } => {}
            // The simulated gossip has no meshes to mend or probe (nor does the world
            // turn probes on).
            Effect::GossipMissed { .. } | Effect::Probe { .. } => {}
            // No periodic sync rounds here: the world is not started with them, and no
            // node sends a digest that could show a peer ahead.
            Effect::SyncRound | Effect::SyncWith(_) => {}
        }
    }

    /// Sends a gossip message to every subscriber of `topic` that can be reached; each
    /// copy is lost or delayed on its own.
    fn gossip(&mut self, from: usize, topic: &str, bytes: &[u8]) {
        let to: Vec<usize> = self.subscribers.get(topic).into_iter().flatten().copied().collect();
        for to in to.into_iter().filter(|t| *t != from) {
            if !self.reachable(from, to) || self.rng.chance(self.config.loss_per_mille) {
                self.stats.lost += 1;
                continue;
            }
            let delay = self.rng.latency_ms();
            let event = Event::Deliver { to, from, topic: topic.to_owned(), bytes: bytes.to_vec() };
            self.at(delay, event);
        }
    }

    fn deliver(&mut self, to: usize, from: usize, topic: String, bytes: Vec<u8>) {
        // In flight when sent: it arrives if its recipient is up and online.
        if !(self.nodes[to].online && self.nodes[to].core.is_some()) {
            self.stats.lost += 1;
            return;
        }
        self.stats.delivered += 1;
        let id = MessageId::new(blake3::hash(&bytes).as_bytes());
        let message = GossipMessage { from: self.nodes[from].peer, id, topic, bytes };
        self.input(to, Input::Gossip(vec![message]));
    }

    fn flush(&mut self, i: usize, flush: FlushId, epoch: u64) {
        let node = &self.nodes[i];
        let Some(core) = node.core.as_ref().filter(|_| node.epoch == epoch) else { return };
        let result = core.store().flush_blocking();
        self.input(i, Input::Flushed { flush, result });
    }

    /// Node `i` stops at once: what it had not flushed is lost.
    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(core) = node.core.take() else { return };
        node.image = core.store().memory_image();
        node.epoch += 1;
        self.stats.crashes += 1;
        self.dm_crashed(i);
        self.sync_crashed(i);
        self.mailbox_crashed(i);
        let down = self.rng.exp(30_000);
        self.at(down, Event::Restart(i));
    }

    fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(image) = node.image.take() else { return };
        let store = Store::open_memory_image(image).expect("a memory store reopens");
        let topics: Vec<String> = store
            .following(&node.me)
            .unwrap_or_default()
            .into_iter()
            .map(|a| Topic::Author(a).to_string())
            .chain(
                store
                    .subscriptions()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| Topic::Tag(t).to_string()),
            )
            .collect();
        node.core = Some(Core::new(node.keys.clone(), store));
        // Posts whose publication the crash cut off are no longer known to be ours.
        let posts = std::mem::take(&mut node.posts);
        let kept: Vec<RecordId> = posts
            .into_iter()
            .filter(|id| node.core.as_ref().is_some_and(|c| c.store().has(id).unwrap_or(false)))
            .collect();
        node.posts = kept;
        for topic in topics {
            self.subscribe(i, topic);
        }
        self.dm_restarted(i);
        self.catch_up(i);
        if !self.settled {
            self.connect(i);
        }
    }

    /// Crashes every node now and restarts it at once, without a flush (for tests: a
    /// world that lost writes its nodes never flushed).
    #[cfg(test)]
    pub(super) fn crash_everyone_now(&mut self) {
        for i in 0..self.nodes.len() {
            self.crash(i);
            self.restart(i);
        }
        self.queue.clear();
    }

    /// The scenario is over: the network heals, everyone comes back and catches up.
    fn settle(&mut self) {
        self.settled = true;
        self.sides = None;
        for i in 0..self.nodes.len() {
            self.nodes[i].online = true;
            if self.nodes[i].core.is_none() {
                self.restart(i);
            } else {
                self.catch_up(i);
            }
        }
        self.connect_all();
    }

    /// The digest of the world's final state (see [`super::digest`]).
    pub fn digest(&self) -> String {
        super::digest::of(self)
    }
}
