//! `kith daemon`: runs a node in the foreground until SIGINT or SIGTERM.

use anyhow::{Context, Result};
use kith_node::{
    config::{Config, Overrides},
    control,
    home::Home,
    Node,
};
use tokio::signal::unix::{signal, SignalKind};

pub(crate) async fn run(home: Home, overrides: Overrides) -> Result<()> {
    home.ensure_dir()?;
    let config = Config::load(&home.config_path(), &overrides)?;
    let socket = home.socket_path();
    // Refuse early, before touching the store, if a daemon already serves this home.
    let listener = control::bind(&socket).await?;
    let (keypair, created) = home.load_or_create_identity()?;
    if created {
        tracing::info!(id = %keypair.id(), "created a new identity");
    }
    let (node, tasks) = match Node::start(&home, keypair, &config).await {
        Ok(started) => started,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e).context("cannot start the node");
        }
    };
    tracing::info!(id = %node.id(), home = %home.dir().display(), "kith daemon running");
    for addr in node.listen_addrs() {
        tracing::info!(%addr, "listening");
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    };
    control::serve(listener, socket, node.clone(), stop).await;
    node.shutdown().await.context("flushing the store")?;
    tasks.join().await;
    tracing::info!("stopped");
    Ok(())
}
