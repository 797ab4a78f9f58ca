//! The node's configuration as the control API shows and changes it: the values the
//! running node applies at once, and those that take effect at its next start.

use serde::{Deserialize, Serialize};

/// The config values a running node changes at once (`settings_set`), as in
/// `config.toml`. In a change, a value left out (`None`) stays as it is; in
/// [`NodeSettings`], every value is there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSettings {
    /// The largest picture or file sent or fetched, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_blob_mb: Option<u64>,
    /// Disk space for pictures and files, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_quota_mb: Option<u64>,
    /// Of that, for thumbnails fetched without being asked, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_budget_mb: Option<u64>,
    /// Upload limit for pictures and files, KiB/s (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_upload_kib_s: Option<u64>,
    /// Whether subscribed hashtags are announced in the DHT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dht_tags: Option<bool>,
    /// Inbound connections of people not followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_inbound: Option<u64>,
    /// Outbound connections to people not followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_outbound: Option<u64>,
    /// Inbound connections per address (0: no cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_conns_per_ip: Option<u64>,
    /// Inbound connections per subnet (0: no cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_conns_per_subnet: Option<u64>,
}

/// A config value that takes effect at the node's next start, as the node runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedSetting {
    /// Its key in `config.toml`.
    pub key: String,
    /// Its value now, as `config.toml` would write it.
    pub value: String,
}

/// The node's configuration (`settings`, and the answer to `settings_set`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSettings {
    /// The values the running node changes at once (all set).
    pub live: LiveSettings,
    /// The values that take effect at the next start (listen, bootstrap, mdns, relay,
    /// store_cache_mb, web), as the node runs now.
    pub restart: Vec<FixedSetting>,
    /// The config file changes are saved to.
    pub path: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::api::{Request, Response};

    #[test]
    fn settings_travel_over_the_control_socket_as_documented() {
        let set: Request =
            serde_json::from_str(r#"{"cmd":"settings_set","set":{"blob_quota_mb":300}}"#).unwrap();
        let want = LiveSettings { blob_quota_mb: Some(300), ..LiveSettings::default() };
        assert_eq!(set, Request::SettingsSet { set: want });
        let shown: Request = serde_json::from_str(r#"{"cmd":"settings"}"#).unwrap();
        assert_eq!(shown, Request::Settings);
        let reply = Response::Settings(Box::new(NodeSettings {
            live: want,
            restart: vec![FixedSetting { key: "mdns".into(), value: "false".into() }],
            path: "/home/a/config.toml".into(),
        }));
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            json,
            r#"{"reply":"settings","live":{"blob_quota_mb":300},"restart":[{"key":"mdns","value":"false"}],"path":"/home/a/config.toml"}"#
        );
        assert_eq!(serde_json::from_str::<Response>(&json).unwrap(), reply);
    }
}
