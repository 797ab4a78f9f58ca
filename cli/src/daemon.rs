//! `kith daemon`: runs a node in the foreground until SIGINT or SIGTERM.

use anyhow::{Context, Result};
use kith_node::{
    config::{Config, Overrides},
    control,
    home::Home,
    web::{self, Web},
    Node,
};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
};

pub(crate) async fn run(home: Home, overrides: Overrides) -> Result<()> {
    home.ensure_dir()?;
    let config = Config::load(&home.config_path(), &overrides)?;
    let socket = home.socket_path();
    // Refuse early, before touching the store, if a daemon already serves this home.
    let listener = control::bind(&socket).await?;
    let web_listener = match web::bind(config.web).await {
        Ok(bound) => bound,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e.into());
        }
    };
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
    let (stopping, stopped) = watch::channel(false);
    let wait_stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut web_task = None;
    let mut web = None;
    if let Some(listener) = web_listener {
        let addr = listener.local_addr().context("web interface address")?;
        let handle = Web::new(node.clone(), addr);
        tracing::info!(url = %handle.origin(), "web interface (kith web prints a sign-in address)");
        web_task = Some(tokio::spawn(handle.clone().serve(listener, wait_stop(stopped.clone()))));
        web = Some(handle);
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let asked = node.clone();
    let stop = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            () = asked.stop_requested() => {}
        }
        stopping.send_replace(true);
    };
    control::serve(listener, socket.clone(), node.clone(), web, stop).await;
    if let Some(task) = web_task {
        let _ = task.await;
    }
    let flushed = node.shutdown().await.context("flushing the store");
    tasks.join().await;
    // Last: `kith stop` waits for the socket to go, and then the store is free.
    let _ = std::fs::remove_file(&socket);
    flushed?;
    tracing::info!("stopped");
    Ok(())
}
