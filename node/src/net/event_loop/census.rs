//! A count of the swarm's events by kind since start (issue 21 item 3): what idle nodes
//! keep doing (pings, identify rounds, DHT requests, AutoNAT probes, syncs, connections
//! opened and closed), read through [`crate::net::Stats::events`].

use libp2p::{
    autonat, gossipsub, identify, kad, request_response,
    swarm::{ConnectionError, SwarmEvent},
};

use crate::net::behaviour::BehaviourEvent;

fn rr(
    proto: &'static [&'static str; 3],
    e: &request_response::Event<Vec<u8>, Vec<u8>>,
) -> &'static str {
    match e {
        request_response::Event::Message {
            message: request_response::Message::Request { .. },
            ..
        } => proto[0],
        request_response::Event::Message { .. } => proto[1],
        request_response::Event::ResponseSent { .. } => "answer sent",
        _ => proto[2],
    }
}

/// The kind of `event`, as counted.
pub(super) fn kind(event: &SwarmEvent<BehaviourEvent>) -> &'static str {
    use BehaviourEvent as B;
    match event {
        SwarmEvent::Behaviour(B::Gossipsub(e)) => match e {
            gossipsub::Event::Message { .. } => "gossipsub message",
            gossipsub::Event::Subscribed { .. } => "gossipsub subscribed",
            gossipsub::Event::Unsubscribed { .. } => "gossipsub unsubscribed",
            gossipsub::Event::SlowPeer { .. } => "gossipsub slow peer",
            _ => "gossipsub other",
        },
        SwarmEvent::Behaviour(B::Identify(e)) => match e {
            identify::Event::Received { .. } => "identify received",
            identify::Event::Sent { .. } => "identify sent",
            identify::Event::Pushed { .. } => "identify pushed",
            identify::Event::Error { .. } => "identify error",
        },
        SwarmEvent::Behaviour(B::Ping(_)) => "ping",
        SwarmEvent::Behaviour(B::Kad(e)) => match e {
            kad::Event::InboundRequest { .. } => "kad request served",
            kad::Event::OutboundQueryProgressed { result, .. } => match result {
                kad::QueryResult::Bootstrap(_) => "kad query step: bootstrap",
                kad::QueryResult::GetClosestPeers(_) => "kad query step: closest peers",
                kad::QueryResult::GetProviders(_) => "kad query step: providers",
                kad::QueryResult::StartProviding(_) | kad::QueryResult::RepublishProvider(_) => {
                    "kad query step: provide"
                }
                kad::QueryResult::GetRecord(_) => "kad query step: get record",
                kad::QueryResult::PutRecord(_) | kad::QueryResult::RepublishRecord(_) => {
                    "kad query step: put record"
                }
            },
            kad::Event::RoutingUpdated { .. } => "kad routing updated",
            _ => "kad other",
        },
        SwarmEvent::Behaviour(B::Autonat(e)) => match e {
            autonat::v1::Event::InboundProbe(_) => "autonat probe served",
            autonat::v1::Event::OutboundProbe(_) => "autonat probe sent",
            autonat::v1::Event::StatusChanged { .. } => "autonat status changed",
        },
        SwarmEvent::Behaviour(B::Sync(e)) => {
            rr(&["sync request in", "sync answer in", "sync failure"], e)
        }
        SwarmEvent::Behaviour(B::Dm(e) | B::Dm2(e) | B::Group(e) | B::Mailbox(e) | B::Blob(e)) => {
            rr(&["other request in", "other answer in", "other request failure"], e)
        }
        SwarmEvent::Behaviour(B::RelayClient(_) | B::Relay(_) | B::Dcutr(_)) => "relay or dcutr",
        SwarmEvent::Behaviour(_) => "other behaviour",
        SwarmEvent::ConnectionEstablished { .. } => "connection opened",
        SwarmEvent::ConnectionClosed { cause, .. } => match cause {
            None => "connection closed by this node",
            Some(ConnectionError::KeepAliveTimeout) => "connection closed: idle",
            Some(ConnectionError::IO(_)) => "connection closed: io (peer)",
        },
        SwarmEvent::Dialing { .. } => "dialing",
        SwarmEvent::OutgoingConnectionError { .. } => "dial failed",
        SwarmEvent::IncomingConnection { .. } => "incoming connection",
        SwarmEvent::IncomingConnectionError { .. } => "incoming connection failed",
        SwarmEvent::NewExternalAddrCandidate { .. } => "external address candidate",
        SwarmEvent::ExternalAddrConfirmed { .. } | SwarmEvent::ExternalAddrExpired { .. } => {
            "external address confirmed or expired"
        }
        _ => "other swarm event",
    }
}
