//! `kith`: the command line of a kith node. `kith daemon` runs the node; every other
//! command is a client of the running daemon's control socket.

mod alloc;
mod args;
mod daemon;
mod output;
mod time;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use kith_node::{
    api::{ErrorKind, Request, Response},
    config::{Config, Overrides},
    control,
    home::Home,
};

use args::{
    BlobCommand, CircleCommand, Cli, Command, GroupCommand, MailboxCommand, MsgCommand,
    ProfileCommand,
};

/// A request the daemon answered with [`Response::Error`].
#[derive(Debug)]
struct Refusal {
    kind: ErrorKind,
    message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

/// The exit status of a request the daemon answered with an error of `kind`: 1 when the
/// request was refused, whatever the reason (the status scripts have always seen; the
/// kind, printed with `--json`, says which), 70 when the node itself failed (its store or
/// disk: `EX_SOFTWARE` of sysexits.h). Usage errors exit 2 before any request is made.
fn exit_status(kind: ErrorKind) -> ExitCode {
    match kind {
        ErrorKind::Invalid
        | ErrorKind::NotFound
        | ErrorKind::Ambiguous
        | ErrorKind::Refused
        | ErrorKind::NotMutual
        | ErrorKind::Unavailable => ExitCode::FAILURE,
        ErrorKind::Internal => ExitCode::from(70),
    }
}

fn default_home() -> Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("kith"))
        .ok_or_else(|| anyhow!("no data folder on this platform; give --home or set KITH_HOME"))
}

fn init_tracing() {
    // Kademlia warns at every start, and every 5 minutes after, that it has no peers to
    // bootstrap from: the node says itself when a bootstrap peer cannot be reached.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,libp2p=warn,libp2p_kad::behaviour=error")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(output::colour_for(&std::io::stderr()))
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
        output::out!(
            "start the node with: kith daemon --home {}",
            shell_word(&home.dir().display().to_string())
        );
    }
    Ok(())
}

/// `path` made absolute against the current folder (the daemon has its own).
fn absolute(path: &std::path::Path) -> Result<String> {
    let abs = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
    abs.into_os_string()
        .into_string()
        .map_err(|p| anyhow!("{}: not a UTF-8 path", std::path::Path::new(&p).display()))
}

fn absolute_all(paths: &[PathBuf]) -> Result<Vec<String>> {
    paths.iter().map(|p| absolute(p)).collect()
}

/// The request for a client command and what to say on success.
fn request_of(command: Command) -> Result<(Request, &'static str)> {
    Ok(match command {
        Command::Id => (Request::Id, ""),
        Command::Status => (Request::Status, ""),
        Command::Peers => (Request::Peers, ""),
        Command::Dial { addr } => (Request::Dial { addr }, "connected"),
        Command::Invite { expires } => (Request::Invite { expires_in_ms: expires }, ""),
        Command::Add { link, petname } => (Request::Add { link, petname }, ""),
        Command::Post { text, circle: Some(name), .. } => {
            (Request::CirclePost { name, text: text_or_stdin(text)? }, "posted to the circle")
        }
        Command::Post { text, reply_to, expires, attach, circle: None } => {
            let text = text_or_stdin(text)?;
            let attach = absolute_all(&attach)?;
            (Request::Post { text, reply_to, expires_in_ms: expires, attach }, "posted")
        }
        Command::Thread { id } => (Request::Thread { id }, ""),
        Command::React { id, emoji } => (Request::React { id, emoji }, "reacted"),
        Command::Unreact { id } => (Request::Unreact { id }, "reaction withdrawn"),
        Command::Repost { id } => (Request::Repost { id }, "reposted"),
        Command::Unrepost { id } => (Request::Unrepost { id }, "repost withdrawn"),
        Command::Delete { id } => (Request::Delete { id }, "deleted"),
        Command::Notifications { live, unread, limit } => {
            (Request::Notifications { live, unread, limit }, "")
        }
        Command::Block { id } => (Request::Block { id }, "blocked"),
        Command::Unblock { id } => (Request::Unblock { id }, "unblocked"),
        Command::Mute { id } => (Request::Mute { id }, "muted"),
        Command::Unmute { id } => (Request::Unmute { id }, "unmuted"),
        Command::Blocked => (Request::Blocked, ""),
        Command::Feed { tag, author, limit, live, before } => {
            (Request::Feed { tag, author, limit, live, before }, "")
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
        Command::Msg { command: MsgCommand::Send { id, text, attach } } => {
            let text = text_or_stdin(text)?;
            (Request::MsgSend { to: id, text, attach: absolute_all(&attach)? }, "message")
        }
        Command::Blob { command: BlobCommand::Get { hash, out } } => {
            let out = out.as_deref().map(absolute).transpose()?;
            (Request::BlobGet { hash, out }, "")
        }
        Command::Msg { command: MsgCommand::Inbox } => (Request::MsgInbox, ""),
        Command::Sync => (Request::Sync, ""),
        Command::Name { id, petname, remove: _ } => (Request::Name { id, petname }, "named"),
        Command::Names => (Request::Names, ""),
        Command::Mailbox { command: None } => (Request::Mailbox, ""),
        Command::Mailbox { command: Some(MailboxCommand::Add { id }) } => {
            (Request::MailboxAdd { id }, "mailbox added")
        }
        Command::Mailbox { command: Some(MailboxCommand::Remove { id }) } => {
            (Request::MailboxRemove { id }, "mailbox removed")
        }
        Command::Msg { command: MsgCommand::Thread { id, limit } } => {
            (Request::MsgThread { peer: id, limit }, "")
        }
        Command::Group { command } => group_request(command)?,
        Command::Groups => (Request::Groups, ""),
        Command::Circle { command } => match command {
            CircleCommand::Create { name, members } => {
                (Request::CircleCreate { name, members }, "circle created")
            }
            CircleCommand::Add { name, id } => (Request::CircleAdd { name, member: id }, "added"),
            CircleCommand::Remove { name, id } => {
                (Request::CircleRemove { name, member: id }, "removed")
            }
        },
        Command::Circles => (Request::Circles, ""),
        Command::Web { .. } => (Request::Web, ""),
        Command::Stop => (Request::Stop, "stopped"),
        Command::Init { .. }
        | Command::Daemon { .. }
        | Command::Completions { .. }
        | Command::Man => bail!("not a client command"),
    })
}

/// The request for a `kith group` command and what to say on success.
fn group_request(command: GroupCommand) -> Result<(Request, &'static str)> {
    Ok(match command {
        GroupCommand::Create { name, members } => {
            (Request::GroupCreate { name, members }, "group created")
        }
        GroupCommand::Add { group, id, history } => {
            (Request::GroupAdd { group, id, history }, "added")
        }
        GroupCommand::Remove { group, id } => (Request::GroupRemove { group, id }, "removed"),
        GroupCommand::Leave { group } => (Request::GroupLeave { group }, "left the group"),
        GroupCommand::Send { group, text } => {
            (Request::GroupSend { group, text: text_or_stdin(text)? }, "sent")
        }
        GroupCommand::Thread { group, limit } => (Request::GroupThread { group, limit }, ""),
    })
}

/// `text`, or standard input when it is `-` (at most 1 MiB; one final newline dropped).
fn text_or_stdin(text: String) -> Result<String> {
    if text != "-" {
        return Ok(text);
    }
    use std::io::Read;
    let mut buf = String::new();
    std::io::stdin()
        .take(kith_node::control::MAX_REQUEST_BYTES as u64)
        .read_to_string(&mut buf)
        .context("reading the text from standard input")?;
    if buf.ends_with('\n') {
        buf.pop();
        if buf.ends_with('\r') {
            buf.pop();
        }
    }
    Ok(buf)
}

/// `kith stop`: asks the daemon to stop, then waits (up to 60 s) until it has flushed
/// its store and gone, so that a new daemon can start on the home at once.
async fn stop(home: &Home, explicit_home: bool, json: bool) -> Result<()> {
    let mut conn = connect(home, explicit_home).await?;
    // The daemon may close the connection as it stops, before or after its answer.
    match conn.call(&Request::Stop).await {
        Ok(Response::Error { message, kind }) => return Err(Refusal { kind, message }.into()),
        Ok(_) | Err(control::ControlError::Io(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let socket = home.socket_path();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while socket.exists() {
        if std::time::Instant::now() > deadline {
            bail!("the daemon was asked to stop but is still running after 60 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    output::response(&Response::Ok, json, "stopped");
    Ok(())
}

/// The home's daemon, or an error that says how to start one for this very home.
async fn connect(home: &Home, explicit_home: bool) -> Result<control::Client> {
    match control::Client::connect(&home.socket_path()).await {
        Ok(conn) => Ok(conn),
        Err(control::ControlError::NoDaemon(_)) => bail!(
            "no kith daemon is running for {}; start one with: {}",
            home.dir().display(),
            start_command(home, explicit_home)
        ),
        Err(e) => Err(e.into()),
    }
}

/// The command that starts a daemon for `home`: `kith daemon`, with `--home` unless the
/// home is the default one.
fn start_command(home: &Home, explicit_home: bool) -> String {
    if explicit_home {
        format!("kith daemon --home {}", shell_word(&home.dir().display().to_string()))
    } else {
        "kith daemon".to_owned()
    }
}

/// `text` as one shell word: as is when it is plain, else in single quotes.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// `kith id` without a daemon: the id from the identity file, and no addresses.
fn offline_id(home: &Home, explicit_home: bool, json: bool) -> Result<()> {
    let keypair = home.load_identity()?;
    if json {
        output::out!("{}", serde_json::json!({"id": keypair.id().to_string(), "addrs": []}));
    } else {
        output::out!("{}", keypair.id());
        output::out!(
            "  (no daemon running, so no addresses; start one with: {})",
            start_command(home, explicit_home)
        );
    }
    Ok(())
}

async fn client(home: &Home, explicit_home: bool, command: Command, json: bool) -> Result<()> {
    let (request, what) = request_of(command)?;
    if let Request::Id = request {
        if !home.socket_path().exists() && home.has_identity() {
            return offline_id(home, explicit_home, json);
        }
    }
    let mut conn = match connect(home, explicit_home).await {
        Ok(conn) => conn,
        Err(_) if matches!(request, Request::Id) && home.has_identity() => {
            return offline_id(home, explicit_home, json);
        }
        Err(e) => return Err(e),
    };
    if let Request::Sync = request {
        return sync(&mut conn, json).await;
    }
    if let Request::BlobGet { .. } = request {
        return blob_get(&mut conn, &request, json).await;
    }
    if matches!(
        request,
        Request::Feed { live: true, .. } | Request::Notifications { live: true, .. }
    ) {
        conn.send(&request).await?;
        while let Some(response) = conn.recv().await? {
            if let Response::Error { message, kind } = response {
                return Err(Refusal { kind, message }.into());
            }
            output::response(&response, json, what);
        }
        bail!("the daemon stopped");
    }
    let alone = alone_warning(&request);
    match conn.call(&request).await? {
        Response::Error { message, kind } => return Err(Refusal { kind, message }.into()),
        response => output::response(&response, json, what),
    }
    if let Some(message) = alone {
        if let Ok(Response::Peers { peers }) = conn.call(&Request::Peers).await {
            if peers.is_empty() {
                output::warning(json, message);
            }
        }
    }
    Ok(())
}

/// What to tell a person whose node, connected to no one, did `request`: a follow, a post
/// or a feed that reaches nobody.
fn alone_warning(request: &Request) -> Option<&'static str> {
    match request {
        Request::Follow { .. } => Some(
            "no peer is connected: their posts arrive once this node reaches them or someone \
             who has them (kith add LINK, kith dial ADDRESS)",
        ),
        Request::Post { .. } => Some(
            "no peer is connected: the post is kept here, and followers get it when they \
             connect",
        ),
        Request::Feed { .. } => {
            Some("no peer is connected: this is only what this node already has")
        }
        _ => None,
    }
}

/// `kith web [--open]`: a fresh sign-in address; with `--open`, in the default browser.
async fn web(home: &Home, explicit_home: bool, open: bool, json: bool) -> Result<()> {
    let mut conn = connect(home, explicit_home).await?;
    let url = match conn.call(&Request::Web).await? {
        Response::WebUrl { url } => url,
        Response::Error { message, kind } => return Err(Refusal { kind, message }.into()),
        other => bail!("unexpected reply from the daemon: {other:?}"),
    };
    if json {
        output::out!("{}", serde_json::json!({"url": url}));
    } else {
        output::out!("{url}");
    }
    if open {
        let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
        let launched = std::process::Command::new(opener)
            .arg(&url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Err(e) = launched {
            bail!("cannot open a browser ({opener}: {e}); open the address above by hand");
        }
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
            Response::Error { message, kind } => return Err(Refusal { kind, message }.into()),
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

/// `kith blob get`: a progress bar on stderr while chunks come, then where it is.
async fn blob_get(conn: &mut control::Client, request: &Request, json: bool) -> Result<()> {
    conn.send(request).await?;
    let bar = (!json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("fetching {bar:30} {pos}/{len} chunks")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    while let Some(response) = conn.recv().await? {
        match response {
            Response::BlobProgress { done, total } => {
                if let Some(bar) = &bar {
                    bar.set_length(u64::from(total));
                    bar.set_position(u64::from(done));
                }
            }
            Response::Error { message, kind } => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                return Err(Refusal { kind, message }.into());
            }
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
    let explicit_home = cli.home.is_some();
    let home = Home::new(match cli.home {
        Some(h) => h,
        None => default_home()?,
    });
    match cli.command {
        Command::Init { name } => init(&home, name, cli.json),
        Command::Daemon { listen, bootstrap, no_mdns, relay, web, no_web } => {
            init_tracing();
            daemon::run(home, Overrides { listen, bootstrap, no_mdns, relay, web, no_web }).await
        }
        Command::Web { open } => web(&home, explicit_home, open, cli.json).await,
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a write error (a closed pipe).
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "kith", &mut script);
            output::raw(&script);
            Ok(())
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            output::raw(&page);
            Ok(())
        }
        Command::Stop => stop(&home, explicit_home, cli.json).await,
        command => client(&home, explicit_home, command, cli.json).await,
    }
}

/// Parses the command line; a usage error with `--json` is reported as JSON too.
fn parse_args() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) => {
            use clap::error::ErrorKind;
            let json = std::env::args_os().skip(1).any(|a| a == "--json");
            let shown = matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if json && !shown {
                // The first paragraph of clap's message, on one line.
                let rendered = e.to_string();
                let first: Vec<&str> =
                    rendered.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
                let first = first.join(" ");
                output::failure(true, first.strip_prefix("error: ").unwrap_or(&first), None);
                return Err(ExitCode::from(2));
            }
            let _ = e.print();
            Err(ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)))
        }
    }
}

fn main() -> ExitCode {
    alloc::purge_freed_memory_at_once();
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let json = cli.json;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    alloc::collect_when_idle(runtime.enable_all());
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            output::failure(json, &format!("cannot start the async runtime: {e}"), None);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let kind = e.downcast_ref::<Refusal>().map(|r| r.kind);
            output::failure(json, &chain.join(": "), kind);
            kind.map_or(ExitCode::FAILURE, exit_status)
        }
    }
}
