//! `kith`: the command line of a kith node. `kith daemon` runs the node; every other
//! command is a client of the running daemon's control socket.

mod args;
mod daemon;
mod output;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use kith_node::{
    api::{Request, Response},
    config::{Config, Overrides},
    control,
    home::Home,
};

use args::{Cli, Command, MsgCommand, ProfileCommand};

fn default_home() -> Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("kith"))
        .ok_or_else(|| anyhow!("no data folder on this platform; give --home or set KITH_HOME"))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn init(home: &Home, name: Option<String>, json: bool) -> Result<()> {
    let keypair = home.create_identity()?;
    let config = home.config_path();
    if !config.exists() || name.is_some() {
        Config::write_initial(&config, name.as_deref())
            .with_context(|| format!("writing {}", config.display()))?;
    }
    if json {
        output::out!("{}", serde_json::json!({"id": keypair.id().to_string()}));
    } else {
        output::out!("created identity {} in {}", keypair.id(), home.dir().display());
        output::out!("start the node with: kith --home {} daemon", home.dir().display());
    }
    Ok(())
}

/// The request for a client command and what to say on success.
fn request_of(command: Command) -> Result<(Request, &'static str)> {
    Ok(match command {
        Command::Id => (Request::Id, ""),
        Command::Status => (Request::Status, ""),
        Command::Peers => (Request::Peers, ""),
        Command::Dial { addr } => (Request::Dial { addr }, "connected"),
        Command::Post { text, reply_to, expires } => {
            (Request::Post { text, reply_to, expires_in_ms: expires }, "posted")
        }
        Command::Thread { id } => (Request::Thread { id }, ""),
        Command::React { id, emoji } => (Request::React { id, emoji }, "reacted"),
        Command::Unreact { id } => (Request::Unreact { id }, "reaction withdrawn"),
        Command::Repost { id } => (Request::Repost { id }, "reposted"),
        Command::Delete { id } => (Request::Delete { id }, "deleted"),
        Command::Notifications { live } => (Request::Notifications { live }, ""),
        Command::Block { id } => (Request::Block { id }, "blocked"),
        Command::Unblock { id } => (Request::Unblock { id }, "unblocked"),
        Command::Mute { id } => (Request::Mute { id }, "muted"),
        Command::Unmute { id } => (Request::Unmute { id }, "unmuted"),
        Command::Blocked => (Request::Blocked, ""),
        Command::Feed { tag, author, limit, live } => {
            (Request::Feed { tag, author, limit, live }, "")
        }
        Command::Follow { id } => (Request::Follow { id }, "following"),
        Command::Unfollow { id } => (Request::Unfollow { id }, "unfollowed"),
        Command::Following => (Request::Following, ""),
        Command::Followers => (Request::Followers, ""),
        Command::Subscribe { tag } => (Request::Subscribe { tag }, "subscribed"),
        Command::Unsubscribe { tag } => (Request::Unsubscribe { tag }, "unsubscribed"),
        Command::Tags => (Request::Tags, ""),
        Command::Profile { command: ProfileCommand::Set { name, bio } } => {
            (Request::ProfileSet { name, bio }, "profile published")
        }
        Command::Profile { command: ProfileCommand::Show { id } } => {
            (Request::ProfileShow { id }, "")
        }
        Command::Msg { command: MsgCommand::Send { id, text } } => {
            (Request::MsgSend { to: id, text }, "message")
        }
        Command::Msg { command: MsgCommand::Inbox } => (Request::MsgInbox, ""),
        Command::Sync => (Request::Sync, ""),
        Command::Msg { command: MsgCommand::Thread { id, limit } } => {
            (Request::MsgThread { peer: id, limit }, "")
        }
        Command::Init { .. } | Command::Daemon { .. } => bail!("not a client command"),
    })
}

async fn client(home: &Home, command: Command, json: bool) -> Result<()> {
    let (request, what) = request_of(command)?;
    let mut conn = control::Client::connect(&home.socket_path()).await?;
    if let Request::Sync = request {
        return sync(&mut conn, json).await;
    }
    if matches!(request, Request::Feed { live: true, .. } | Request::Notifications { live: true }) {
        conn.send(&request).await?;
        while let Some(response) = conn.recv().await? {
            if let Response::Error { message } = response {
                bail!(message);
            }
            output::response(&response, json, what);
        }
        bail!("the daemon stopped");
    }
    match conn.call(&request).await? {
        Response::Error { message } => bail!(message),
        response => output::response(&response, json, what),
    }
    Ok(())
}

/// `kith sync`: a progress bar on stderr while peers are synced, then the summary.
async fn sync(conn: &mut control::Client, json: bool) -> Result<()> {
    conn.send(&Request::Sync).await?;
    let bar = (!json).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("syncing {bar:30} {pos}/{len} peers  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    while let Some(response) = conn.recv().await? {
        match response {
            Response::SyncProgress { peers_done, peers_total, fetched } => {
                if let Some(bar) = &bar {
                    bar.set_length(peers_total as u64);
                    bar.set_position(peers_done as u64);
                    bar.set_message(format!("{fetched} records fetched"));
                }
            }
            Response::Error { message } => bail!(message),
            done => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                output::response(&done, json, "");
                return Ok(());
            }
        }
    }
    bail!("the daemon stopped")
}

async fn run(cli: Cli) -> Result<()> {
    let home = Home::new(match cli.home {
        Some(h) => h,
        None => default_home()?,
    });
    match cli.command {
        Command::Init { name } => init(&home, name, cli.json),
        Command::Daemon { listen, bootstrap, no_mdns, relay } => {
            init_tracing();
            daemon::run(home, Overrides { listen, bootstrap, no_mdns, relay }).await
        }
        command => client(&home, command, cli.json).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kith: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            // Daemon errors can quote a peer (a refusal reason): no escape sequences.
            eprintln!("kith: {}", kith_node::text::line(&chain.join(": ")));
            ExitCode::FAILURE
        }
    }
}
