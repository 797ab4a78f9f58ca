//! The `[mailbox]` section of `config.toml`: how much this node holds for people who
//! named it as their mailbox while they are offline (issue #18), and for how long.

use serde::Deserialize;

use super::ConfigError;

/// Default of [`MailboxConfig::per_recipient_messages`].
pub const DEFAULT_PER_RECIPIENT_MESSAGES: u64 = 1_000;
/// Default of [`MailboxConfig::per_recipient_mb`].
pub const DEFAULT_PER_RECIPIENT_MB: u64 = 16;
/// Default of [`MailboxConfig::per_depositor_mb`].
pub const DEFAULT_PER_DEPOSITOR_MB: u64 = 16;
/// Default of [`MailboxConfig::total_mb`].
pub const DEFAULT_TOTAL_MB: u64 = 256;
/// Default of [`MailboxConfig::ttl_days`].
pub const DEFAULT_TTL_DAYS: u64 = 14;
/// Largest count or MiB accepted for a quota.
const MAX_QUOTA: u64 = 1 << 30;
/// Longest time to hold an envelope, days.
const MAX_TTL_DAYS: u64 = 365;

/// The file form of the section: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileMailbox {
    per_recipient_messages: Option<u64>,
    per_recipient_mb: Option<u64>,
    per_depositor_mb: Option<u64>,
    total_mb: Option<u64>,
    ttl_days: Option<u64>,
}

/// What this node holds for others as their mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxConfig {
    /// Most envelopes held for one person (`per_recipient_messages`, default 1000).
    pub per_recipient_messages: u64,
    /// Most bytes held for one person, MiB (`per_recipient_mb`, default 16).
    pub per_recipient_mb: u64,
    /// Most bytes held from one depositing node, MiB (`per_depositor_mb`, default 16).
    pub per_depositor_mb: u64,
    /// Most bytes held in all, MiB (`total_mb`, default 256).
    pub total_mb: u64,
    /// Days an envelope is held before it is dropped uncollected (`ttl_days`, default 14).
    pub ttl_days: u64,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        Self {
            per_recipient_messages: DEFAULT_PER_RECIPIENT_MESSAGES,
            per_recipient_mb: DEFAULT_PER_RECIPIENT_MB,
            per_depositor_mb: DEFAULT_PER_DEPOSITOR_MB,
            total_mb: DEFAULT_TOTAL_MB,
            ttl_days: DEFAULT_TTL_DAYS,
        }
    }
}

impl MailboxConfig {
    /// The validated section from its file form.
    pub(super) fn from_file(file: Option<&FileMailbox>) -> Result<Self, ConfigError> {
        let Some(file) = file else { return Ok(Self::default()) };
        let check = |field: &'static str, value: Option<u64>, default: u64, max: u64| {
            let v = value.unwrap_or(default);
            if (1..=max).contains(&v) {
                Ok(v)
            } else {
                Err(ConfigError::Invalid { field, message: format!("{v}: expected 1 to {max}") })
            }
        };
        Ok(Self {
            per_recipient_messages: check(
                "mailbox.per_recipient_messages",
                file.per_recipient_messages,
                DEFAULT_PER_RECIPIENT_MESSAGES,
                MAX_QUOTA,
            )?,
            per_recipient_mb: check(
                "mailbox.per_recipient_mb",
                file.per_recipient_mb,
                DEFAULT_PER_RECIPIENT_MB,
                MAX_QUOTA,
            )?,
            per_depositor_mb: check(
                "mailbox.per_depositor_mb",
                file.per_depositor_mb,
                DEFAULT_PER_DEPOSITOR_MB,
                MAX_QUOTA,
            )?,
            total_mb: check("mailbox.total_mb", file.total_mb, DEFAULT_TOTAL_MB, MAX_QUOTA)?,
            ttl_days: check("mailbox.ttl_days", file.ttl_days, DEFAULT_TTL_DAYS, MAX_TTL_DAYS)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::{Config, Overrides};
    use super::*;

    #[test]
    fn mailbox_section_defaults_values_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let load = || Config::load(&path, &Overrides::default()).map(|c| c.mailbox);
        assert_eq!(load().unwrap(), MailboxConfig::default());
        fs::write(&path, "[mailbox]\nper_recipient_messages = 5\nttl_days = 2\n").unwrap();
        let c = load().unwrap();
        assert_eq!((c.per_recipient_messages, c.ttl_days, c.total_mb), (5, 2, DEFAULT_TOTAL_MB));
        for bad in ["ttl_days = 0", "ttl_days = 1000", "total_mb = -1", "per_sender = 3"] {
            fs::write(&path, format!("[mailbox]\n{bad}\n")).unwrap();
            let e = load().unwrap_err().to_string();
            let key = bad.split(" =").next().unwrap();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }
}
