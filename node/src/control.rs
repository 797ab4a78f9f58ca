//! The control socket: a Unix socket in the home (mode 0600 in a 0700 folder) carrying
//! [`Request`]s and [`Response`]s as length-prefixed JSON frames (4-byte big-endian
//! length, then that many bytes). Only the user who owns the daemon may connect
//! (checked with SO_PEERCRED). Malformed or oversized frames get an error reply; the
//! daemon stays up.

use std::{
    fs, io,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use thiserror::Error;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{UnixListener, UnixStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use crate::{
    api::{ApiError, ErrorKind, Request, Response},
    node::Node,
    web::Web,
};

/// Largest request frame the daemon reads (bytes).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Largest response frame the client reads (bytes).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Most control connections served at once; a connection over this is refused with a
/// reason and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// How long the daemon waits for a client's next request (or the rest of one) before it
/// closes the connection.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most refusals in flight at once (each waits up to [`REFUSAL_LINGER`] so the client can
/// read the reason); beyond this, connections over the cap are closed without a word.
const MAX_REFUSALS: usize = 256;
/// How long a refused connection stays open for the client to read why.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// First and longest pause after a failed accept (out of file descriptors, say).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// Accept failures are logged at most once in this long (with one line when they stop).
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(60);

/// Control socket errors.
#[derive(Debug, Error)]
pub enum ControlError {
    /// No daemon listens on the home's socket.
    #[error("no kith daemon is running for {0}; start one with: kith daemon")]
    NoDaemon(String),
    /// Another daemon already serves this home.
    #[error("a kith daemon is already running for {0}")]
    AlreadyRunning(String),
    /// The socket path is too long for a Unix socket.
    #[error("socket path {0} is too long for a Unix socket; use a shorter home path")]
    PathTooLong(String),
    /// A frame was larger than allowed.
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// A frame was not valid JSON of the expected type.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The connection failed.
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
}

async fn read_frame(stream: &mut UnixStream, max: usize) -> Result<Option<Vec<u8>>, ControlError> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(ControlError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

async fn write_frame<T: serde::Serialize>(
    stream: &mut UnixStream,
    value: &T,
) -> Result<(), ControlError> {
    let body = serde_json::to_vec(value).map_err(|e| ControlError::Malformed(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|_| ControlError::TooLarge(body.len()))?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await?;
    Ok(())
}

/// Binds the home's control socket, removing a stale one, refusing if a daemon answers.
///
/// # Errors
/// [`ControlError::AlreadyRunning`], [`ControlError::PathTooLong`] or I/O errors.
pub async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    // sun_path holds 108 bytes including the terminating NUL.
    if path.as_os_str().len() > 107 {
        return Err(ControlError::PathTooLong(path.display().to_string()));
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ControlError::AlreadyRunning(home_of(path)));
        }
        fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

fn home_of(socket: &Path) -> String {
    socket.parent().map(|p| p.display().to_string()).unwrap_or_default()
}

/// Serves control connections until `shutdown` resolves; `web` answers `kith web`.
///
/// At most [`MAX_CONNECTIONS`] are served at once (more are told so and closed), each
/// waits at most [`READ_TIMEOUT`] for a request, and failing accepts (no file descriptors
/// left) are retried with a growing pause and logged once, not once per attempt.
pub async fn serve(
    listener: UnixListener,
    socket: PathBuf,
    node: Node,
    web: Option<Web>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let owner = fs::metadata(&socket).map(|m| m.uid()).ok();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    // While accepting fails: the pause after the last failure, and whether this spell of
    // failures was logged (one spell a minute is; flapping at the limit is not).
    let mut backoff: Option<(Duration, bool)> = None;
    let mut last_logged: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some((_, true)) = backoff.take() {
                        tracing::info!("control socket accepts connections again");
                    }
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        refuse(stream, &refusals);
                        continue;
                    };
                    let web = web.clone();
                    let served = node.clone();
                    // One of the node's tasks: its shutdown waits for the connection.
                    node.spawn(async move {
                        let _slot = slot;
                        if let Err(error) = serve_connection(stream, served, web, owner).await {
                            tracing::debug!(%error, "control connection ended");
                        }
                    });
                }
                Err(error) => {
                    let (pause, logged) = match backoff {
                        None => {
                            let log = last_logged.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY);
                            if log {
                                tracing::warn!(%error, "control socket cannot accept connections; retrying quietly until it can");
                                last_logged = Some(std::time::Instant::now());
                            }
                            (ACCEPT_BACKOFF.0, log)
                        }
                        Some((last, logged)) => ((last * 2).min(ACCEPT_BACKOFF.1), logged),
                    };
                    backoff = Some((pause, logged));
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            },
        }
    }
    // The socket file stays until the caller has stopped the node and removes it: its
    // going away tells `kith stop` that the store is free.
    drop(socket);
}

/// Tells a connection over [`MAX_CONNECTIONS`] why it is refused, then closes it (after
/// the client had a moment to send its request and read the reply).
fn refuse(mut stream: UnixStream, refusals: &Arc<Semaphore>) {
    tracing::debug!("refused a control connection: too many at once");
    let Ok(permit) = Arc::clone(refusals).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit: OwnedSemaphorePermit = permit;
        let reason = format!(
            "too many control connections at once (the limit is {MAX_CONNECTIONS}); try again"
        );
        if write_frame(&mut stream, &error(ErrorKind::Unavailable, reason)).await.is_err() {
            return;
        }
        // Closing with the request unread could reset the connection before the client
        // reads the reason: take what it sends until it leaves, briefly.
        let drain = async {
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let _ = tokio::time::timeout(REFUSAL_LINGER, drain).await;
    });
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    ApiError::new(kind, message).into()
}

async fn serve_connection(
    mut stream: UnixStream,
    node: Node,
    web: Option<Web>,
    owner: Option<u32>,
) -> Result<(), ControlError> {
    let caller = stream.peer_cred().ok().map(|c| c.uid());
    if owner.is_none() || caller != owner {
        tracing::warn!(?caller, "refused a control connection from another user");
        // Take the request off the wire first (bounded, briefly), so the client can read
        // the reason instead of failing on a closed socket while it writes.
        let read = read_frame(&mut stream, MAX_REQUEST_BYTES);
        let _ = tokio::time::timeout(REFUSAL_LINGER, read).await;
        let refusal = error(ErrorKind::Refused, "permission denied: not the daemon's user");
        write_frame(&mut stream, &refusal).await?;
        return Ok(());
    }
    loop {
        // Between requests a connection ends when the node shuts down (the client of
        // `kith stop` keeps its connection while it waits for the daemon to go).
        let next = tokio::time::timeout(READ_TIMEOUT, read_frame(&mut stream, MAX_REQUEST_BYTES));
        let read = tokio::select! {
            read = next => read,
            () = node.closed() => return Ok(()),
        };
        let Ok(read) = read else {
            tracing::debug!("closed an idle control connection");
            return Ok(());
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(ControlError::TooLarge(n)) => {
                // The rest of the frame is not read: reply, then close.
                let refusal =
                    error(ErrorKind::Invalid, format!("request of {n} bytes is too large"));
                write_frame(&mut stream, &refusal).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let request: Request = match serde_json::from_slice(&frame) {
            Ok(r) => r,
            Err(e) => {
                let refusal = error(ErrorKind::Invalid, format!("malformed request: {e}"));
                write_frame(&mut stream, &refusal).await?;
                continue;
            }
        };
        if let (Request::Web, Some(web)) = (&request, &web) {
            let response = match web.login_url() {
                Ok(url) => Response::WebUrl { url },
                Err(e) => error(ErrorKind::Internal, format!("cannot make a sign-in token: {e}")),
            };
            write_frame(&mut stream, &response).await?;
            continue;
        }
        if !crate::node::streams(&request) {
            let response = node.handle(request).await;
            write_frame(&mut stream, &response).await?;
            continue;
        }
        let live = crate::node::is_live(&request);
        let mut responses = node.stream(request);
        let mut probe = [0u8; 1];
        loop {
            tokio::select! {
                response = responses.next() => match response {
                    Some(response) => write_frame(&mut stream, &response).await?,
                    None => break,
                },
                // A live stream's client sends nothing more: EOF (or anything else) means
                // it left. A client that asked for progress may have half-closed already
                // and still reads the answer; if it left, the next write fails. Either
                // way, work the request started goes on (Node::stream).
                _ = stream.read(&mut probe), if live => return Ok(()),
            }
        }
        // A live stream ends only when the daemon stops: the client sees the socket close.
        if live {
            return Ok(());
        }
    }
}

/// A client of a running daemon's control socket.
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects to the daemon of the home whose socket is `path`.
    ///
    /// # Errors
    /// [`ControlError::NoDaemon`] when nothing listens there.
    pub async fn connect(path: &Path) -> Result<Self, ControlError> {
        match UnixStream::connect(path).await {
            Ok(stream) => Ok(Self { stream }),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(ControlError::NoDaemon(home_of(path)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends one request.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send(&mut self, request: &Request) -> Result<(), ControlError> {
        write_frame(&mut self.stream, request).await
    }

    /// Reads one response; `None` when the daemon closed the connection.
    ///
    /// # Errors
    /// I/O errors, oversized or malformed frames.
    pub async fn recv(&mut self) -> Result<Option<Response>, ControlError> {
        match read_frame(&mut self.stream, MAX_RESPONSE_BYTES).await? {
            Some(frame) => serde_json::from_slice(&frame)
                .map(Some)
                .map_err(|e| ControlError::Malformed(e.to_string())),
            None => Ok(None),
        }
    }

    /// Sends a request and reads its response.
    ///
    /// # Errors
    /// As [`Client::send`] and [`Client::recv`]; a closed connection is an I/O error.
    pub async fn call(&mut self, request: &Request) -> Result<Response, ControlError> {
        if let Err(sent) = self.send(request).await {
            // A daemon that refuses the connection may have closed it after its reason:
            // that reason is the better error.
            return match self.recv().await {
                Ok(Some(response)) => Ok(response),
                _ => Err(sent),
            };
        }
        self.recv().await?.ok_or_else(|| {
            ControlError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "daemon closed the connection",
            ))
        })
    }
}
