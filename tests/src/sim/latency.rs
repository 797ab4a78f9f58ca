//! Per-link latency for the simulation, added in this process: every node's TCP port is
//! redirected (iptables `REDIRECT` in the `nat` table) to a proxy in this process that
//! forwards to the node and holds each chunk of bytes, both ways, for the link's delay
//! before passing it on. A link is the pair of nodes (the dialling node is known by its
//! source port: libp2p dials from its listening port); its delay is fixed for the run,
//! drawn from the seed, uniform in the configured range, the same both ways. Every
//! connection goes through a proxy whoever dials it and however the address was learned
//! (topology, DHT, identify), because the redirection is by destination port.
//!
//! The proxies connect to the nodes from 127.0.0.2, which the redirection skips; a second
//! rule rewrites that source back to 127.0.0.1 (ports 20000-29999), so that nodes see every peer on
//! 127.0.0.1, as without the proxies (gossipsub exempts that address from its penalty
//! for many peers on one IP).
//!
//! It changes the network configuration, so it refuses to run unless the process is in
//! a network namespace of its own (only `lo`), as `scripts/sim --latency-ms` arranges.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpSocket, TcpStream,
    },
    sync::mpsc,
    task::JoinHandle,
    time::Instant,
};

use super::Rng;

/// The address the proxies connect from; connections from it are not redirected.
const PROXY_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Where proxy connections appear to come from: 127.0.0.1, on ports below the OS's
/// ephemeral range (32768 and up), where the nodes listen and dial from. A proxy
/// connection that appeared to come from a node's listening port would take the address
/// pair that node needs to dial back from it ("address already in use").
const SNAT_TO: &str = "127.0.0.1:20000-29999";
/// Chunks of bytes held in one direction of one connection at once; a full queue stops
/// reading from the sender (TCP backpressure), so memory stays bounded.
const PUMP_QUEUE: usize = 1024;
/// Largest chunk read at once.
const CHUNK: usize = 64 * 1024;

/// The delay range of the links, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLatency {
    /// Shortest one-way delay of a link.
    pub min: Duration,
    /// Longest one-way delay of a link.
    pub max: Duration,
}

impl LinkLatency {
    /// The one-way delay of the link between two nodes (either order), from `seed`.
    pub fn of_link(&self, seed: u64, a: usize, b: usize) -> Duration {
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let mut rng = Rng::new(seed ^ lo.wrapping_mul(0x9E37_79B9) ^ hi.wrapping_mul(0x85EB_CA6B));
        let span = self.max.saturating_sub(self.min).as_micros() as u64;
        self.min + Duration::from_micros(rng.next_u64() % (span + 1))
    }
}

/// The proxies of a run; dropping it stops accepting new connections.
pub struct Links {
    accepting: Vec<JoinHandle<()>>,
}

impl Drop for Links {
    fn drop(&mut self) {
        for task in &self.accepting {
            task.abort();
        }
    }
}

/// Whether this process has a network namespace of its own: `lo` is its only interface
/// (`/proc/self/net/dev` lists the interfaces of the process's namespace).
fn isolated() -> bool {
    let Ok(dev) = std::fs::read_to_string("/proc/self/net/dev") else { return false };
    let names: Vec<&str> =
        dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    names == ["lo"]
}

/// Puts a proxy in front of each node's port (`ports[i]` is node `i`'s).
///
/// # Errors
/// Not in a namespace of its own, a proxy that cannot listen, or iptables failing.
pub async fn install(ports: &[u16], latency: LinkLatency, seed: u64) -> Result<Links, String> {
    if !isolated() {
        return Err("--latency-ms changes iptables rules, so it runs only in a network \
                    namespace of its own: use scripts/sim (as root)"
            .into());
    }
    iptables(&[
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-p",
        "tcp",
        "-s",
        "127.0.0.2",
        "-j",
        "SNAT",
        "--to-source",
        SNAT_TO,
    ])?;
    let node_of: Arc<HashMap<u16, usize>> =
        Arc::new(ports.iter().enumerate().map(|(i, p)| (*p, i)).collect());
    let mut links = Links { accepting: Vec::with_capacity(ports.len()) };
    for (j, &port) in ports.iter().enumerate() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| format!("latency proxy: cannot listen: {e}"))?;
        let proxy_port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let rule = [
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            "127.0.0.1",
            "--dport",
            &port.to_string(),
            "!",
            "-s",
            "127.0.0.2",
            "-j",
            "REDIRECT",
            "--to-ports",
            &proxy_port.to_string(),
        ];
        iptables(&rule)?;
        let node_of = node_of.clone();
        links.accepting.push(tokio::spawn(async move {
            loop {
                let Ok((inbound, from)) = listener.accept().await else {
                    // Out of descriptors, say: try again a moment later.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                // Dials come from the dialling node's listening port; anything else is
                // given a delay of its own from its port.
                let delay = match node_of.get(&from.port()) {
                    Some(&i) => latency.of_link(seed, i, j),
                    None => latency.of_link(seed ^ 0x5EED, usize::from(from.port()), j),
                };
                tokio::spawn(forward(inbound, port, delay));
            }
        }));
    }
    Ok(links)
}

fn iptables(rule: &[&str]) -> Result<(), String> {
    let status = std::process::Command::new("iptables")
        .args(rule)
        .status()
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if !status.success() {
        return Err(format!("iptables {} failed ({status})", rule.join(" ")));
    }
    Ok(())
}

/// Connects to the node's real port (from [`PROXY_SOURCE`], so not redirected again) and
/// passes bytes both ways, each chunk `delay` after it arrived.
async fn forward(inbound: TcpStream, port: u16, delay: Duration) {
    let outbound = async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((PROXY_SOURCE, 0)))?;
        socket.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
    };
    let Ok(outbound) = outbound.await else { return };
    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    tokio::join!(pump(in_read, out_write, delay), pump(out_read, in_write, delay));
}

/// One direction: reads chunks, and writes each `delay` after it was read, in order.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(PUMP_QUEUE);
    let read = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                    if tx.send((Instant::now() + delay, chunk)).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_delays_are_in_range_symmetric_and_seeded() {
        let l = LinkLatency { min: Duration::from_millis(50), max: Duration::from_millis(150) };
        for a in 0..20 {
            for b in 0..20 {
                let d = l.of_link(7, a, b);
                assert!(d >= l.min && d <= l.max);
                assert_eq!(d, l.of_link(7, b, a));
            }
        }
        assert_ne!(
            (0..20).map(|b| l.of_link(7, 0, b)).collect::<Vec<_>>(),
            (0..20).map(|b| l.of_link(8, 0, b)).collect::<Vec<_>>()
        );
    }
}
