//! Node configuration, built in layers: defaults, then the home's `config.toml`, then
//! command-line flags. A bad value is an error naming the field.

use std::{fs, io, net::SocketAddr, path::Path};

use libp2p::Multiaddr;

use crate::net::{ConnLimits, RelayMode};
use serde::Deserialize;
use thiserror::Error;

pub mod live;
pub mod mailbox;

pub use mailbox::MailboxConfig;

/// Errors in the configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The config file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The config file is not valid TOML for kith.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A value is not valid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The text of the config file at `path`; empty when there is none.
fn read_file(path: &Path) -> Result<String, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ConfigError::Read { path: path.display().to_string(), source }),
    }
}

/// The file form: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Vec<String>>,
    bootstrap: Option<Vec<String>>,
    mdns: Option<bool>,
    name: Option<String>,
    relay: Option<String>,
    store_cache_mb: Option<u64>,
    web: Option<String>,
    max_blob_mb: Option<u64>,
    blob_quota_mb: Option<u64>,
    thumbnail_budget_mb: Option<u64>,
    blob_upload_kib_s: Option<u64>,
    dht_tags: Option<bool>,
    max_inbound: Option<usize>,
    max_outbound: Option<usize>,
    max_conns_per_ip: Option<usize>,
    max_conns_per_subnet: Option<usize>,
    mailbox: Option<mailbox::FileMailbox>,
}

/// Values given on the command line; `None` / empty means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`, repeatable.
    pub listen: Vec<String>,
    /// `--bootstrap`, repeatable.
    pub bootstrap: Vec<String>,
    /// `--no-mdns`.
    pub no_mdns: bool,
    /// `--relay[=friends|open|off]`.
    pub relay: Option<String>,
    /// `--web ADDR`.
    pub web: Option<String>,
    /// `--no-web`.
    pub no_web: bool,
}

/// Where the local web interface listens (`web` in the file, `--web`, `--no-web`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebSetting {
    /// No web interface.
    Off,
    /// `127.0.0.1` on [`DEFAULT_WEB_PORT`], or a free port when that one is taken.
    Default,
    /// Exactly this loopback address (port 0: one the OS picks).
    At(SocketAddr),
}

/// The web interface's port when none is configured.
pub const DEFAULT_WEB_PORT: u16 = 7780;

/// The validated configuration of a node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// LAN discovery.
    pub mdns: bool,
    /// Display name from `kith init --name` (published as the profile when none exists).
    pub name: Option<String>,
    /// Whether this node relays for others: off (default), friends (mutual connections
    /// only) or open.
    pub relay: RelayMode,
    /// The store's in-memory cache, MiB (`store_cache_mb`, default 16).
    pub store_cache_mb: u64,
    /// The local web interface.
    pub web: WebSetting,
    /// Pictures and files.
    pub blobs: BlobConfig,
    /// Whether subscribed hashtags are announced in the DHT (`dht_tags`, default on):
    /// finds other subscribers of a tag beyond the peers already connected, and tells
    /// every DHT participant which tags this node follows.
    pub dht_tags: bool,
    /// Connection limits (`max_inbound`, `max_outbound`, `max_conns_per_ip`,
    /// `max_conns_per_subnet`; 0 for the last two means no cap).
    pub limits: ConnLimits,
    /// What this node holds for others as their mailbox (`[mailbox]`).
    pub mailbox: MailboxConfig,
}

/// The settings of pictures and files (blobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobConfig {
    /// The largest picture or file this node sends or fetches, MiB (`max_blob_mb`,
    /// default 25).
    pub max_blob_mb: u64,
    /// How much the blob store may hold, MiB (`blob_quota_mb`, default 1024): blobs
    /// fetched from others are evicted, least recently used first, to stay within it.
    pub blob_quota_mb: u64,
    /// How much of the blob store the thumbnails of followed authors' pictures, fetched
    /// without being asked, may take, MiB (`thumbnail_budget_mb`, default 64).
    pub thumbnail_budget_mb: u64,
    /// The most bytes of pictures and files this node sends to others per second, KiB
    /// (`blob_upload_kib_s`; 0, the default, is no limit).
    pub blob_upload_kib_s: u64,
}

impl Default for BlobConfig {
    fn default() -> Self {
        Self {
            max_blob_mb: DEFAULT_MAX_BLOB_MB,
            blob_quota_mb: DEFAULT_BLOB_QUOTA_MB,
            thumbnail_budget_mb: DEFAULT_THUMBNAIL_BUDGET_MB,
            blob_upload_kib_s: 0,
        }
    }
}

/// Default of [`Config::thumbnail_budget_mb`].
pub const DEFAULT_THUMBNAIL_BUDGET_MB: u64 = 64;

/// Default of [`Config::max_blob_mb`].
pub const DEFAULT_MAX_BLOB_MB: u64 = 25;

/// Default of [`Config::blob_quota_mb`].
pub const DEFAULT_BLOB_QUOTA_MB: u64 = 1024;

/// Largest `max_blob_mb`: the protocol's limit.
pub const MAX_MAX_BLOB_MB: u64 = kith_protocol::limits::MAX_BLOB_BYTES / (1024 * 1024);

/// Largest `blob_quota_mb` (16 TiB).
pub const MAX_BLOB_QUOTA_MB: u64 = 16 * 1024 * 1024;

/// A MiB value of the file, checked against its range.
fn mib(
    field: &'static str,
    value: Option<u64>,
    default: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let v = value.unwrap_or(default);
    if !(1..=max).contains(&v) {
        return Err(ConfigError::Invalid {
            field,
            message: format!("{v}: expected 1 to {max} (MiB)"),
        });
    }
    Ok(v)
}

/// Default of [`Config::store_cache_mb`]: the store's own default
/// (`store::DEFAULT_CACHE_BYTES`; a test keeps the two equal, so that loading a
/// configuration needs nothing of the store).
pub const DEFAULT_STORE_CACHE_MB: u64 = 16;

/// Largest connection limit accepted.
pub const MAX_CONNECTION_LIMIT: usize = 100_000;

fn too_many(field: &'static str, n: usize) -> ConfigError {
    ConfigError::Invalid { field, message: format!("{n}: at most {MAX_CONNECTION_LIMIT}") }
}

/// Largest `store_cache_mb` accepted (64 GiB).
const MAX_STORE_CACHE_MB: u64 = 64 * 1024;

fn parse_relay(field: &'static str, value: &str) -> Result<RelayMode, ConfigError> {
    match value {
        "off" => Ok(RelayMode::Off),
        "friends" => Ok(RelayMode::Friends),
        "open" => Ok(RelayMode::Open),
        other => Err(ConfigError::Invalid {
            field,
            message: format!("{other:?}: expected \"off\", \"friends\" or \"open\""),
        }),
    }
}

/// Default listen addresses: all interfaces, TCP and QUIC, OS-chosen ports.
pub fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// `"off"`, or a loopback `IP:PORT`: the web interface has no TLS and must not be
/// reachable from other machines.
fn parse_web(field: &'static str, value: &str) -> Result<WebSetting, ConfigError> {
    if value == "off" {
        return Ok(WebSetting::Off);
    }
    let addr: SocketAddr = value.parse().map_err(|_| ConfigError::Invalid {
        field,
        message: format!(
            "{value:?}: expected \"off\" or a loopback address like 127.0.0.1:{DEFAULT_WEB_PORT}"
        ),
    })?;
    if !addr.ip().is_loopback() {
        return Err(ConfigError::Invalid {
            field,
            message: format!("{value:?}: the web interface listens on loopback addresses only"),
        });
    }
    Ok(WebSetting::At(addr))
}

fn parse_addrs(field: &'static str, values: &[String]) -> Result<Vec<Multiaddr>, ConfigError> {
    values
        .iter()
        .map(|v| {
            v.parse::<Multiaddr>()
                .map_err(|e| ConfigError::Invalid { field, message: format!("{v:?}: {e}") })
        })
        .collect()
}

impl Config {
    /// Builds the configuration from defaults, the file at `path` (if it exists) and
    /// `overrides`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file or field.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::from_text(path, &read_file(path)?, overrides)
    }

    /// Builds the configuration from defaults, `text` (the file at `path`, named in
    /// errors) and `overrides`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file or field.
    pub fn from_text(path: &Path, text: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        let file = toml::from_str::<FileConfig>(text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let listen = if !overrides.listen.is_empty() {
            parse_addrs("--listen", &overrides.listen)?
        } else if let Some(listen) = &file.listen {
            parse_addrs("listen", listen)?
        } else {
            default_listen()
        };
        if listen.is_empty() {
            return Err(ConfigError::Invalid {
                field: "listen",
                message: "at least one address is needed".into(),
            });
        }
        let mut bootstrap = parse_addrs("bootstrap", file.bootstrap.as_deref().unwrap_or(&[]))?;
        bootstrap.extend(parse_addrs("--bootstrap", &overrides.bootstrap)?);
        let mdns = !overrides.no_mdns && file.mdns.unwrap_or(true);
        let relay = match (&overrides.relay, &file.relay) {
            (Some(flag), _) => parse_relay("--relay", flag)?,
            (None, Some(value)) => parse_relay("relay", value)?,
            (None, None) => RelayMode::Off,
        };
        let store_cache_mb = file.store_cache_mb.unwrap_or(DEFAULT_STORE_CACHE_MB);
        if !(1..=MAX_STORE_CACHE_MB).contains(&store_cache_mb) {
            return Err(ConfigError::Invalid {
                field: "store_cache_mb",
                message: format!("{store_cache_mb}: expected 1 to {MAX_STORE_CACHE_MB} (MiB)"),
            });
        }
        let web = match (overrides.no_web, &overrides.web, &file.web) {
            (true, _, _) => WebSetting::Off,
            (false, Some(flag), _) => parse_web("--web", flag)?,
            (false, None, Some(value)) => parse_web("web", value)?,
            (false, None, None) => WebSetting::Default,
        };
        let max_blob_mb =
            mib("max_blob_mb", file.max_blob_mb, DEFAULT_MAX_BLOB_MB, MAX_MAX_BLOB_MB)?;
        let blob_quota_mb =
            mib("blob_quota_mb", file.blob_quota_mb, DEFAULT_BLOB_QUOTA_MB, MAX_BLOB_QUOTA_MB)?;
        let thumbnail_budget_mb = mib(
            "thumbnail_budget_mb",
            file.thumbnail_budget_mb,
            DEFAULT_THUMBNAIL_BUDGET_MB,
            MAX_BLOB_QUOTA_MB,
        )?;
        let blob_upload_kib_s = file.blob_upload_kib_s.unwrap_or(0);
        if blob_upload_kib_s > MAX_BLOB_QUOTA_MB {
            return Err(ConfigError::Invalid {
                field: "blob_upload_kib_s",
                message: format!(
                    "{blob_upload_kib_s}: expected 0 (no limit) to {MAX_BLOB_QUOTA_MB}"
                ),
            });
        }
        let blobs =
            BlobConfig { max_blob_mb, blob_quota_mb, thumbnail_budget_mb, blob_upload_kib_s };
        let defaults = ConnLimits::default();
        let cap = |field: &'static str, value: Option<usize>, default: Option<usize>| match value {
            Some(0) => Ok(None),
            Some(n) if n > MAX_CONNECTION_LIMIT => Err(too_many(field, n)),
            Some(n) => Ok(Some(n)),
            None => Ok(default),
        };
        let total = |field: &'static str, value: Option<usize>, default: usize| match value {
            Some(n) if n > MAX_CONNECTION_LIMIT => Err(too_many(field, n)),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let limits = ConnLimits {
            max_inbound: total("max_inbound", file.max_inbound, defaults.max_inbound)?,
            max_outbound: total("max_outbound", file.max_outbound, defaults.max_outbound)?,
            per_ip: cap("max_conns_per_ip", file.max_conns_per_ip, defaults.per_ip)?,
            per_subnet: cap(
                "max_conns_per_subnet",
                file.max_conns_per_subnet,
                defaults.per_subnet,
            )?,
        };
        let dht_tags = file.dht_tags.unwrap_or(true);
        let mailbox = MailboxConfig::from_file(file.mailbox.as_ref())?;
        Ok(Self {
            mailbox,
            blobs,
            listen,
            bootstrap,
            mdns,
            name: file.name,
            relay,
            store_cache_mb,
            web,
            dht_tags,
            limits,
        })
    }

    /// Writes a config file holding `name` (used by `kith init`).
    ///
    /// # Errors
    /// File errors.
    pub fn write_initial(path: &Path, name: Option<&str>) -> io::Result<()> {
        let mut text = String::from(
            "# kith node configuration.\n\
             # listen = [\"/ip4/0.0.0.0/tcp/4001\", \"/ip4/0.0.0.0/udp/4001/quic-v1\"]\n\
             # bootstrap = [\"/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...\"]\n\
             # mdns = true\n\
             # Relay for others (circuit relay v2) when this node is publicly reachable:\n\
             # \"friends\" (mutual connections only) or \"open\". Default \"off\".\n\
             # relay = \"friends\"\n\
             # Memory for the store's cache, MiB (default 16).\n\
             # store_cache_mb = 16\n\
             # The local web interface (kith web prints its address): a loopback address,\n\
             # or \"off\". Default 127.0.0.1:7780, or a free port when that one is taken.\n\
             # web = \"127.0.0.1:7780\"\n\
             # Largest picture or file sent or fetched, MiB (default 25).\n\
             # max_blob_mb = 25\n\
             # Disk space for pictures and files, MiB (default 1024); others' are evicted\n\
             # least recently used first.\n\
             # blob_quota_mb = 1024\n\
             # Of that, for thumbnails of followed authors' pictures, fetched on arrival,\n\
             # MiB (default 64).\n\
             # thumbnail_budget_mb = 64\n\
             # Upload limit for pictures and files sent to others, KiB/s (0: none).\n\
             # blob_upload_kib_s = 0\n\
             # Announce subscribed hashtags in the DHT, so that other subscribers are found\n\
             # beyond the peers already connected; every DHT participant then learns\n\
             # which tags this node follows. Default true.\n\
             # dht_tags = true\n\
             # mdns = false keeps this node's id off the LAN (peers there are then found\n\
             # only by address). Connection limits: inbound and outbound connections of\n\
             # people you do not follow, inbound ones per address and per subnet (IPv4\n\
             # /24, IPv6 /48; 0: no cap). People you follow always get in.\n\
             # max_inbound = 160\n\
             # max_outbound = 96\n\
             # max_conns_per_ip = 16\n\
             # max_conns_per_subnet = 48\n\
             # Mailbox quotas and how long envelopes are held: a [mailbox] section at the\n\
             # end of this file (see docs/cli.md).\n",
        );
        if let Some(name) = name {
            let quoted = toml::Value::String(name.to_owned()).to_string();
            text.push_str(&format!("name = {quoted}\n"));
        }
        fs::write(path, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let c = Config::load(&path, &Overrides::default()).unwrap();
        assert_eq!(c.listen, default_listen());
        assert!(c.mdns);
        fs::write(&path, "listen = [\"/ip4/127.0.0.1/tcp/0\"]\nmdns = false\n").unwrap();
        let c = Config::load(&path, &Overrides::default()).unwrap();
        assert_eq!(c.listen.len(), 1);
        assert!(!c.mdns);
        let o = Overrides { listen: vec!["/ip6/::1/tcp/0".into()], ..Default::default() };
        let c = Config::load(&path, &o).unwrap();
        assert_eq!(c.listen[0].to_string(), "/ip6/::1/tcp/0");
    }

    #[test]
    fn bad_values_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let o = Overrides { listen: vec!["nonsense".into()], ..Default::default() };
        let e = Config::load(&path, &o).unwrap_err().to_string();
        assert!(e.contains("--listen"), "{e}");
        fs::write(&path, "lissten = []\n").unwrap();
        let e = Config::load(&path, &Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("lissten"), "{e}");
        Config::write_initial(&path, Some("Ann \"the\" Dev")).unwrap();
        let c = Config::load(&path, &Overrides::default()).unwrap();
        assert_eq!(c.name.as_deref(), Some("Ann \"the\" Dev"));
        assert_eq!(c.relay, RelayMode::Off);
    }

    #[test]
    fn relay_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, "relay = \"open\"\n").unwrap();
        assert_eq!(Config::load(&path, &Overrides::default()).unwrap().relay, RelayMode::Open);
        let o = Overrides { relay: Some("friends".into()), ..Default::default() };
        assert_eq!(Config::load(&path, &o).unwrap().relay, RelayMode::Friends);
        let o = Overrides { relay: Some("everyone".into()), ..Default::default() };
        let e = Config::load(&path, &o).unwrap_err().to_string();
        assert!(e.contains("--relay") && e.contains("everyone"), "{e}");
    }

    #[test]
    fn store_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(
            Config::load(&path, &Overrides::default()).unwrap().store_cache_mb,
            DEFAULT_STORE_CACHE_MB
        );
        fs::write(&path, "store_cache_mb = 8\n").unwrap();
        assert_eq!(Config::load(&path, &Overrides::default()).unwrap().store_cache_mb, 8);
        for bad in ["0", "1000000", "-1", "\"big\""] {
            fs::write(&path, format!("store_cache_mb = {bad}\n")).unwrap();
            let e = Config::load(&path, &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("store_cache_mb"), "{bad}: {e}");
        }
        fs::write(&path, "max_blob_mb = 5\nblob_quota_mb = 100\n").unwrap();
        let c = Config::load(&path, &Overrides::default()).unwrap();
        assert_eq!((c.blobs.max_blob_mb, c.blobs.blob_quota_mb), (5, 100));
        fs::write(&path, "max_blob_mb = 2000\n").unwrap();
        let e = Config::load(&path, &Overrides::default()).unwrap_err().to_string();
        assert!(e.starts_with("max_blob_mb:"), "{e}");
        fs::write(&path, "relay = \"maybe\"\n").unwrap();
        let e = Config::load(&path, &Overrides::default()).unwrap_err().to_string();
        assert!(e.starts_with("relay:"), "{e}");
    }

    #[test]
    fn web_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let load = |o: &Overrides| Config::load(&path, o).map(|c| c.web);
        assert_eq!(load(&Overrides::default()).unwrap(), WebSetting::Default);
        fs::write(&path, "web = \"127.0.0.1:9000\"\n").unwrap();
        assert_eq!(
            load(&Overrides::default()).unwrap(),
            WebSetting::At("127.0.0.1:9000".parse().unwrap())
        );
        let flag = Overrides { web: Some("[::1]:0".into()), ..Default::default() };
        assert_eq!(load(&flag).unwrap(), WebSetting::At("[::1]:0".parse().unwrap()));
        let off = Overrides { no_web: true, web: Some("127.0.0.1:1".into()), ..flag };
        assert_eq!(load(&off).unwrap(), WebSetting::Off);
        fs::write(&path, "web = \"off\"\n").unwrap();
        assert_eq!(load(&Overrides::default()).unwrap(), WebSetting::Off);
        for bad in ["0.0.0.0:80", "192.0.2.1:7780", "localhost", "127.0.0.1"] {
            fs::write(&path, format!("web = \"{bad}\"\n")).unwrap();
            let e = load(&Overrides::default()).unwrap_err().to_string();
            assert!(e.starts_with("web:"), "{bad}: {e}");
        }
        let e = load(&Overrides { web: Some("10.0.0.1:1".into()), ..Default::default() });
        assert!(e.unwrap_err().to_string().starts_with("--web:"));
    }
}
