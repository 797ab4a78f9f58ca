//! Ping as kith runs it (issue 21 item 3): the side that dialled a connection pings it
//! every [`IdleTuning::ping_interval`]; the side that accepted it answers those pings and
//! pings itself only every [`IdleTuning::listener_ping_interval`].
//!
//! kith reads nothing from pings (libp2p's ping closes no connection); they keep idle
//! connections' NAT and firewall mappings alive. One round trip carries traffic both
//! ways and refreshes the mappings at both ends, so one side's pings are enough: the
//! dialler's, since a node behind a NAT is the one that dials (a hole-punched
//! connection is dialled by both sides, and both keep pinging). Before, each connection
//! was pinged from both ends; at 100 nodes, all connected to each other, pings and the
//! yamux round-trip probes they set off were about a third of idle CPU.
//!
//! Each connection pings at one of [`SPREAD`] intervals from `ping_interval` ×
//! (1 − [`IdleTuning::ping_jitter`]) to × (1 + `ping_jitter`), taken in turn as
//! connections open (libp2p's ping gives every connection of a behaviour the same
//! interval, its first ping at once): connections opened together (a node's start, a
//! simulation's set-up) would otherwise ping together at every interval, in waves that a
//! measurement window catches or not.
//!
//! [`IdleTuning::ping_interval`]: super::IdleTuning::ping_interval
//! [`IdleTuning::listener_ping_interval`]: super::IdleTuning::listener_ping_interval
//! [`IdleTuning::ping_jitter`]: super::IdleTuning::ping_jitter

use std::{
    task::{Context, Poll},
    time::Duration,
};

use libp2p::{
    core::{transport::PortUse, Endpoint},
    ping,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

use super::tuning::IdleTuning;

/// Ping intervals per side when [`IdleTuning::ping_jitter`] is not zero: connections
/// take them in turn.
pub(crate) const SPREAD: usize = 8;

/// Ping behaviours by interval: one set gives the handlers of the connections this node
/// dialled, the other those of the connections it accepted; within a set, connections
/// take the intervals in turn.
pub(crate) struct Ping {
    dialled: Vec<ping::Behaviour>,
    accepted: Vec<ping::Behaviour>,
    /// Connections given a handler so far (which interval the next one takes).
    opened: usize,
}

/// [`SPREAD`] intervals from `base` × (1 − `jitter`) to × (1 + `jitter`), or `base`
/// alone when `jitter` is zero.
fn intervals(base: Duration, jitter: f64) -> Vec<Duration> {
    let jitter = jitter.clamp(0.0, 0.9);
    if jitter == 0.0 {
        return vec![base];
    }
    (0..SPREAD)
        .map(|i| base.mul_f64(1.0 - jitter + 2.0 * jitter * i as f64 / (SPREAD - 1) as f64))
        .collect()
}

fn behaviours(base: Duration, jitter: f64) -> Vec<ping::Behaviour> {
    let config = |d| ping::Config::new().with_interval(d);
    intervals(base, jitter).into_iter().map(|d| ping::Behaviour::new(config(d))).collect()
}

impl Ping {
    pub(crate) fn new(idle: &IdleTuning) -> Self {
        let accepted = idle.listener_ping_interval.unwrap_or(idle.ping_interval);
        Self {
            dialled: behaviours(idle.ping_interval, idle.ping_jitter),
            accepted: behaviours(accepted, idle.ping_jitter),
            opened: 0,
        }
    }

    /// The index of the interval the next connection takes, among `n`.
    fn next(&mut self, n: usize) -> usize {
        self.opened = self.opened.wrapping_add(1);
        self.opened % n.max(1)
    }
}

impl NetworkBehaviour for Ping {
    type ConnectionHandler = <ping::Behaviour as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = ping::Event;

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let i = self.next(self.accepted.len());
        match self.accepted.get_mut(i) {
            Some(b) => b.handle_established_inbound_connection(id, peer, local, remote),
            None => Err(ConnectionDenied::new("no ping behaviour")),
        }
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let i = self.next(self.dialled.len());
        match self.dialled.get_mut(i) {
            Some(b) => b.handle_established_outbound_connection(id, peer, addr, role, port_use),
            None => Err(ConnectionDenied::new("no ping behaviour")),
        }
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        for b in self.dialled.iter_mut().chain(&mut self.accepted) {
            b.on_swarm_event(event);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        // Every behaviour only queues the result as an event: any one will do.
        if let Some(b) = self.dialled.first_mut() {
            b.on_connection_handler_event(peer, id, event);
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        for b in self.dialled.iter_mut().chain(&mut self.accepted) {
            if let Poll::Ready(event) = b.poll(cx) {
                return Poll::Ready(event);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use libp2p::{noise, swarm::SwarmEvent, tcp, yamux, Swarm, SwarmBuilder};

    use super::*;

    fn swarm(idle: &IdleTuning) -> Swarm<Ping> {
        SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| Ping::new(idle))
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build()
    }

    /// The node that dialled pings at its interval; the node that accepted answers and
    /// sends only its first ping (at connection start), with a listener interval far
    /// longer than the test.
    #[tokio::test]
    async fn the_dialler_pings_and_the_accepting_side_answers() {
        let idle = IdleTuning {
            ping_interval: Duration::from_millis(50),
            listener_ping_interval: Some(Duration::from_secs(3600)),
            ..IdleTuning::KITH
        };
        let (mut dialler, mut listener) = (swarm(&idle), swarm(&idle));
        listener.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = listener.select_next_some().await {
                break address;
            }
        };
        dialler.dial(addr).unwrap();
        let (mut dialler_pings, mut listener_pings) = (0, 0);
        let wait = async {
            while dialler_pings < 5 {
                tokio::select! {
                    SwarmEvent::Behaviour(ping::Event { result: Ok(_), .. }) = dialler.select_next_some() => {
                        dialler_pings += 1;
                    }
                    SwarmEvent::Behaviour(ping::Event { result: Ok(_), .. }) = listener.select_next_some() => {
                        listener_pings += 1;
                    }
                    else => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("five pings by the dialler");
        assert!(listener_pings <= 1, "the accepting side pinged {listener_pings} times");
    }

    /// With jitter, the intervals spread evenly over base × (1 ± jitter), distinct, and
    /// connections take them in turn; without, one interval.
    #[test]
    fn intervals_spread_around_the_base_and_connections_take_them_in_turn() {
        let base = Duration::from_secs(60);
        let spread = intervals(base, 0.1);
        assert_eq!(spread.len(), SPREAD);
        let ms = |d: Option<&Duration>| d.map(|d| (d.as_secs_f64() * 1000.0).round() as u64);
        assert_eq!(ms(spread.first()), Some(54_000));
        assert_eq!(ms(spread.last()), Some(66_000));
        assert!(spread.windows(2).all(|w| w[0] < w[1]), "{spread:?}");
        assert_eq!(intervals(base, 0.0), vec![base]);
        let mut ping = Ping::new(&IdleTuning { ping_jitter: 0.1, ..IdleTuning::KITH });
        let taken: Vec<usize> = (0..2 * SPREAD).map(|_| ping.next(SPREAD)).collect();
        for i in 0..SPREAD {
            assert_eq!(taken.iter().filter(|t| **t == i).count(), 2, "{taken:?}");
        }
    }
}
