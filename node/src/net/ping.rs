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
//! [`IdleTuning::ping_interval`]: super::IdleTuning::ping_interval
//! [`IdleTuning::listener_ping_interval`]: super::IdleTuning::listener_ping_interval

use std::task::{Context, Poll};

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

/// Two ping behaviours: one gives the handlers of the connections this node dialled,
/// the other those of the connections it accepted.
pub(crate) struct Ping {
    dialled: ping::Behaviour,
    accepted: ping::Behaviour,
}

impl Ping {
    pub(crate) fn new(idle: &IdleTuning) -> Self {
        let accepted = idle.listener_ping_interval.unwrap_or(idle.ping_interval);
        Self {
            dialled: ping::Behaviour::new(ping::Config::new().with_interval(idle.ping_interval)),
            accepted: ping::Behaviour::new(ping::Config::new().with_interval(accepted)),
        }
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
        self.accepted.handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.dialled.handle_established_outbound_connection(id, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.dialled.on_swarm_event(event);
        self.accepted.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        // Both behaviours only queue the result as an event: either one will do.
        self.dialled.on_connection_handler_event(peer, id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.dialled.poll(cx) {
            Poll::Pending => self.accepted.poll(cx),
            ready => ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
}
