//! Command-line arguments (clap). Validation of ids, tags and addresses happens in the
//! node, which answers with one-line errors; `main` only maps them to exit codes.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// kith: a serverless social network node.
#[derive(Debug, Parser)]
#[command(name = "kith", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Data folder of the node (default: the platform data dir, e.g. ~/.local/share/kith).
    #[arg(long, global = true, env = "KITH_HOME", value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
    /// Print JSON: one object, or one object per line for listings.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create an identity and config in the home (never overwrites an identity).
    Init {
        /// Display name to publish as your profile.
        #[arg(long)]
        name: Option<String>,
    },
    /// Run the node in the foreground until SIGINT/SIGTERM.
    Daemon {
        /// Address to listen on (repeatable). Default: all interfaces, TCP and QUIC.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<String>,
        /// Peer to dial at start (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
        /// Do not discover peers on the local network with mDNS.
        #[arg(long)]
        no_mdns: bool,
        /// Relay for peers behind NAT: `friends` (mutual connections only; the default
        /// when the flag is given without a value), `open`, or `off`.
        #[arg(long, value_name = "WHO", num_args = 0..=1, default_missing_value = "friends",
              require_equals = true)]
        relay: Option<String>,
        /// Serve the web interface on this loopback address (port 0: any free port).
        /// Default: 127.0.0.1:7780, or a free port when that one is taken.
        #[arg(long, value_name = "ADDR", conflicts_with = "no_web")]
        web: Option<String>,
        /// Do not serve the web interface.
        #[arg(long)]
        no_web: bool,
    },
    /// Print the address of the node's web interface with a fresh one-time sign-in token.
    Web {
        /// Also open it in the default browser.
        #[arg(long)]
        open: bool,
    },
    /// Ask the running daemon to shut down cleanly (waits until it has).
    Stop,
    /// Print a shell completion script: kith completions bash > ~/.local/share/bash-completion/completions/kith
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): kith man > ~/.local/share/man/man1/kith.1
    Man,
    /// Show own id and listen addresses (the id also without a daemon).
    Id,
    /// Show peers, topics and counts.
    Status,
    /// List connected peers.
    Peers,
    /// Connect to a peer now (and remember it): by address, or a person by id (found
    /// through remembered addresses and the DHT).
    Dial {
        /// An address (/ip4/192.0.2.1/tcp/4001/p2p/12D3KooW...) or a person (id, petname,
        /// name, id tail).
        addr: String,
    },
    /// Make an invite link to send a friend: your id, the addresses your node can be
    /// reached at and your name, signed by you (with a QR code on a terminal).
    Invite {
        /// Valid for this long: 30m, 12h, 7d (default 7d, at most 365d).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
        expires: Option<u64>,
    },
    /// Add the person behind an invite link: check it, connect, follow them and give
    /// them a petname.
    Add {
        /// The link (kith://invite/...).
        link: String,
        /// Your petname for them (default: the name in the link, when it is free).
        #[arg(long = "as", value_name = "PETNAME")]
        petname: Option<String>,
    },
    /// Sign and publish a post; hashtags come from the text, @petname or @id mentions.
    Post {
        /// The text; `-` reads it from standard input.
        text: String,
        /// Record id of the post this replies to.
        #[arg(long, value_name = "RECORD_ID")]
        reply_to: Option<String>,
        /// Every node drops the post after this long: 90s, 30m, 1h, 7d.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
        expires: Option<u64>,
        /// Attach a picture or file (repeatable, up to 4). Pictures are shared without
        /// their metadata (EXIF, GPS).
        #[arg(long, value_name = "FILE")]
        attach: Vec<PathBuf>,
        /// Post to one of your circles only: encrypted so that only its current members
        /// read it (your other followers store it but cannot read it).
        #[arg(long, value_name = "NAME", conflicts_with_all = ["reply_to", "expires", "attach"])]
        circle: Option<String>,
    },
    /// Show a conversation: the root post and every reply this node knows, as a tree.
    Thread {
        /// Any record of the conversation.
        id: String,
    },
    /// React to a record (one reaction per person per record; a new one replaces it).
    React {
        /// The record.
        id: String,
        /// The reaction, e.g. 👍.
        emoji: String,
    },
    /// Withdraw your reaction to a record.
    Unreact {
        /// The record.
        id: String,
    },
    /// Share someone's post with your followers.
    Repost {
        /// The post.
        id: String,
    },
    /// Withdraw your repost of a post.
    Unrepost {
        /// The post (or your repost of it).
        id: String,
    },
    /// Publish a signed tombstone for one of your records; every node drops it.
    Delete {
        /// The record.
        id: String,
    },
    /// Drop everything from a person; refuse their messages and connections.
    Block {
        /// Their id.
        id: String,
    },
    /// Undo `block`.
    Unblock {
        /// Their id.
        id: String,
    },
    /// Keep syncing a person but hide them from your feeds and notifications.
    Mute {
        /// Their id.
        id: String,
    },
    /// Undo `mute`.
    Unmute {
        /// Their id.
        id: String,
    },
    /// List blocked and muted people.
    Blocked,
    /// Replies, mentions, reactions, reposts, follows and messages for you.
    Notifications {
        /// Keep running and print new notifications as they come (each marked read).
        #[arg(long)]
        live: bool,
        /// Only notifications not listed before.
        #[arg(long, conflicts_with = "live")]
        unread: bool,
        /// At most this many (default and most 200).
        #[arg(short = 'n', long, value_name = "N", conflicts_with = "live")]
        limit: Option<usize>,
    },
    /// Show posts, newest first (your timeline unless filtered).
    Feed {
        /// Only posts with this hashtag.
        #[arg(long)]
        tag: Option<String>,
        /// Only posts by this person.
        #[arg(long, value_name = "ID")]
        author: Option<String>,
        /// At most this many posts (default 20).
        #[arg(short = 'n', long, value_name = "N")]
        limit: Option<usize>,
        /// Only posts older than this one (the id, or its first 8+ hex digits, of the last
        /// post of the page before): the next page.
        #[arg(long, value_name = "CURSOR", conflicts_with = "live")]
        before: Option<String>,
        /// Keep running and print new posts as they arrive.
        #[arg(long)]
        live: bool,
    },
    /// Follow a person.
    Follow {
        /// Their id (12D3KooW...).
        id: String,
    },
    /// Stop following a person.
    Unfollow {
        /// Their id.
        id: String,
    },
    /// List whom you follow.
    Following,
    /// List who follows you.
    Followers,
    /// Subscribe to a hashtag.
    Subscribe {
        /// The tag, with or without #.
        tag: String,
    },
    /// Unsubscribe from a hashtag.
    Unsubscribe {
        /// The tag, with or without #.
        tag: String,
    },
    /// List subscribed hashtags.
    Tags,
    /// Show or set a profile.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Run one history-sync round with every connected peer now, with progress.
    Sync,
    /// Give a person a petname: your own name for them, shown instead of the name they
    /// chose, and usable wherever an id is (and as @PETNAME in posts).
    Name {
        /// The person: id, current petname, name or id tail.
        id: String,
        /// One word: letters, digits, '_', '-' or '.'.
        #[arg(required_unless_present = "remove")]
        petname: Option<String>,
        /// Take their petname away instead.
        #[arg(long, conflicts_with = "petname")]
        remove: bool,
    },
    /// List your petnames.
    Names,
    /// Who holds your messages while you are offline (your mailboxes: chosen among your
    /// mutual connections, or by hand), and whom this node holds for.
    Mailbox {
        #[command(subcommand)]
        command: Option<MailboxCommand>,
    },
    /// Private group chat: end-to-end encrypted to every current member.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// The groups you are in.
    Groups,
    /// Circles: named audiences among your mutual connections, for posts only they read.
    Circle {
        #[command(subcommand)]
        command: CircleCommand,
    },
    /// Your circles and their members.
    Circles,
    /// End-to-end encrypted direct messages with mutual connections.
    Msg {
        #[command(subcommand)]
        command: MsgCommand,
    },
    /// Pictures and files attached to posts and messages.
    Blob {
        #[command(subcommand)]
        command: BlobCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MailboxCommand {
    /// Choose a mailbox by hand (a mutual connection, e.g. an always-on node of your
    /// own); from then on your mailboxes are the ones you chose.
    Add {
        /// The holder: id, petname, name or id tail.
        id: String,
    },
    /// Stop using someone as a mailbox.
    Remove {
        /// The holder: id, petname, name or id tail.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// A new private group you manage; members must be your mutual connections.
    Create {
        /// Its name (1 to 64 bytes).
        name: String,
        /// A member: id, petname, name or id tail (repeatable).
        #[arg(long = "member", value_name = "ID")]
        members: Vec<String>,
    },
    /// Add a mutual connection to a group you made.
    Add {
        /// The group: its id, or a name unique among your groups.
        group: String,
        /// Who.
        id: String,
        /// Also give them the messages sent before they joined (otherwise they read from
        /// when they joined).
        #[arg(long)]
        history: bool,
    },
    /// Remove a member from a group you made: they read nothing sent after.
    Remove {
        /// The group.
        group: String,
        /// Who.
        id: String,
    },
    /// Leave a group (deletes it for everyone if you made it).
    Leave {
        /// The group.
        group: String,
    },
    /// Send a message to every current member (queued for those offline).
    Send {
        /// The group.
        group: String,
        /// The text; `-` reads it from standard input.
        text: String,
    },
    /// A group's messages, oldest first.
    Thread {
        /// The group.
        group: String,
        /// At most this many (the latest).
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CircleCommand {
    /// A new circle; members must be your mutual connections.
    Create {
        /// Its name (1 to 64 bytes, unique among your circles).
        name: String,
        /// A member: id, petname, name or id tail (repeatable).
        #[arg(long = "member", value_name = "ID")]
        members: Vec<String>,
    },
    /// Add a mutual connection to a circle: they read what you post to it from now on.
    Add {
        /// The circle.
        name: String,
        /// Who.
        id: String,
    },
    /// Remove a member from a circle: they read nothing you post to it after.
    Remove {
        /// The circle.
        name: String,
        /// Who.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BlobCommand {
    /// Fetch a picture or file from whoever has it, check its hash, and save it.
    Get {
        /// Its hash, as attachments list it.
        hash: String,
        /// Where to save it (default: leave it in the node's store and print the path).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MsgCommand {
    /// Encrypt and send (queued while the peer is offline); only to mutual connections.
    Send {
        /// The recipient: id, petname, name or id tail.
        id: String,
        /// The text; `-` reads it from standard input.
        text: String,
        /// Attach a picture or file (repeatable, up to 4), encrypted for the recipient.
        #[arg(long, value_name = "FILE")]
        attach: Vec<PathBuf>,
    },
    /// List conversations, newest first, with unread counts.
    Inbox,
    /// Show the messages with one person, oldest first (marks them read).
    Thread {
        /// The other person's id.
        id: String,
        /// At most this many (the latest; default 50).
        #[arg(short = 'n', long, value_name = "N")]
        limit: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProfileCommand {
    /// Publish your profile.
    Set {
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Short biography.
        #[arg(long)]
        bio: Option<String>,
    },
    /// Show a profile (yours by default).
    Show {
        /// Whose.
        id: Option<String>,
    },
}

/// Parses `90s`, `30m`, `1h`, `7d` (or plain seconds) into milliseconds.
fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&text[..i], &text[i..]),
        None => (text, "s"),
    };
    let n: u64 =
        number.parse().map_err(|_| format!("not a duration: {text:?} (try 30m, 1h, 7d)"))?;
    let unit_ms: u64 = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("unknown unit in {text:?}: use s, m, h or d")),
    };
    if n == 0 {
        return Err("a duration must be more than 0".into());
    }
    n.checked_mul(unit_ms).ok_or_else(|| format!("duration {text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
        assert_eq!(parse_duration_ms("5"), Ok(5_000));
        assert!(parse_duration_ms("0m").is_err());
        assert!(parse_duration_ms("1y").is_err());
        assert!(parse_duration_ms("h").is_err());
        assert!(parse_duration_ms("99999999999999999999d").is_err());
    }
}
