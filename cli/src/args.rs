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
    },
    /// Show own id and listen addresses.
    Id,
    /// Show peers, topics and counts.
    Status,
    /// List connected peers.
    Peers,
    /// Connect to a peer now (and remember it).
    Dial {
        /// The peer's address, e.g. /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW...
        addr: String,
    },
    /// Sign and publish a post; hashtags come from the text.
    Post {
        /// The text.
        text: String,
        /// Record id of the post this replies to.
        #[arg(long, value_name = "RECORD_ID")]
        reply_to: Option<String>,
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
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
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
    /// End-to-end encrypted direct messages with mutual connections.
    Msg {
        #[command(subcommand)]
        command: MsgCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MsgCommand {
    /// Encrypt and send (queued while the peer is offline); only to mutual connections.
    Send {
        /// The recipient's id.
        id: String,
        /// The text.
        text: String,
    },
    /// List conversations, newest first, with unread counts.
    Inbox,
    /// Show the messages with one person, oldest first (marks them read).
    Thread {
        /// The other person's id.
        id: String,
        /// At most this many (the latest; default 50).
        #[arg(long, value_name = "N")]
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
