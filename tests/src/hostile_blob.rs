//! A hostile blob peer: a bare rust-libp2p swarm that answers `/kith/blob/1` requests
//! with mischief: an endless reply (a length prefix of 4 GiB, then zeros for as long as
//! the asker reads), or a true manifest followed by wrong chunks.

use std::{io, time::Duration};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use kith_protocol::blob::{BlobReply, BlobRequest, Manifest, VerifiedManifest};
use libp2p::{
    identity::Keypair,
    noise,
    request_response::{self, ProtocolSupport},
    swarm::SwarmEvent,
    tcp, yamux, Multiaddr, PeerId, StreamProtocol, SwarmBuilder,
};
use tokio::{sync::oneshot, task::JoinHandle};

/// What the hostile peer does.
#[derive(Debug, Clone)]
pub enum Mischief {
    /// Every reply claims 4 GiB and streams zeros.
    Endless,
    /// Manifests are true (this one's), chunks are the right length and all wrong.
    WrongChunks(Manifest),
}

#[derive(Clone)]
struct RawCodec {
    endless: bool,
}

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > 1024 {
            return Err(io::Error::other("request too long"));
        }
        let mut buf = vec![0u8; len];
        io.read_exact(&mut buf).await?;
        Ok(buf)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("the hostile peer asks nothing"))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Err(io::Error::other("the hostile peer asks nothing"))
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        if self.endless {
            io.write_all(&u32::MAX.to_be_bytes()).await?;
            let zeros = vec![0u8; 64 * 1024];
            // Until the asker hangs up (at most 1 GiB, so the task ends anyway).
            for _ in 0..16 * 1024 {
                io.write_all(&zeros).await?;
            }
            return io.close().await;
        }
        io.write_all(&(res.len() as u32).to_be_bytes()).await?;
        io.write_all(&res).await?;
        io.close().await
    }
}

/// The hostile blob peer; dropping it stops it.
pub struct HostileBlobPeer {
    peer: PeerId,
    addr: Multiaddr,
    task: JoinHandle<()>,
}

impl HostileBlobPeer {
    /// Starts listening on 127.0.0.1 (OS-chosen port) with `mischief`.
    pub async fn start(mischief: Mischief) -> Self {
        let key = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let endless = matches!(mischief, Mischief::Endless);
        let behaviour = request_response::Behaviour::with_codec(
            RawCodec { endless },
            [(StreamProtocol::new("/kith/blob/1"), ProtocolSupport::Inbound)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(60)),
        );
        let mut swarm = SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| behaviour)
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tx = Some(tx);
            let manifest = match &mischief {
                Mischief::WrongChunks(m) => Some(m.clone()),
                Mischief::Endless => None,
            };
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(address);
                        }
                    }
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    }) => {
                        let reply = answer(&request, manifest.as_ref());
                        let _ = swarm.behaviour_mut().send_response(channel, reply);
                    }
                    _ => {}
                }
            }
        });
        let addr = tokio::time::timeout(crate::DEADLINE, rx).await.unwrap().unwrap();
        let addr = addr.with_p2p(peer).unwrap();
        Self { peer, addr, task }
    }

    /// Its peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// Its address, ending in `/p2p/<id>`.
    pub fn addr(&self) -> Multiaddr {
        self.addr.clone()
    }
}

fn answer(request: &[u8], manifest: Option<&Manifest>) -> Vec<u8> {
    let Some(manifest) = manifest else { return Vec::new() };
    let reply = match BlobRequest::from_bytes(request) {
        Ok(BlobRequest::Manifest { .. }) => BlobReply::Manifest(manifest.clone()),
        Ok(BlobRequest::Chunk { hash, index }) => {
            match manifest
                .clone()
                .verify(&hash)
                .ok()
                .and_then(|m: VerifiedManifest| m.chunk_len(index))
            {
                Some(len) => BlobReply::Chunk(vec![0xAB; len]),
                None => BlobReply::Missing,
            }
        }
        Err(_) => BlobReply::Missing,
    };
    reply.to_bytes().unwrap_or_default()
}

impl Drop for HostileBlobPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
