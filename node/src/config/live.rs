//! Config values a running node changes at once, and saving them to `config.toml`
//! without losing the person's comments and other lines.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::Path,
};

use toml_edit::{DocumentMut, Item, Value};

use super::{read_file, Config, ConfigError, Overrides, WebSetting, DEFAULT_WEB_PORT};
use crate::api::{FixedSetting, LiveSettings};

/// Mode of a config file the node creates (it names the node's peers and addresses).
const NEW_FILE_MODE: u32 = 0o600;

impl Config {
    /// The values the running node changes at once.
    pub fn live(&self) -> LiveSettings {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let cap = |n: Option<usize>| n.map_or(0, count);
        LiveSettings {
            max_blob_mb: Some(self.blobs.max_blob_mb),
            blob_quota_mb: Some(self.blobs.blob_quota_mb),
            thumbnail_budget_mb: Some(self.blobs.thumbnail_budget_mb),
            blob_upload_kib_s: Some(self.blobs.blob_upload_kib_s),
            dht_tags: Some(self.dht_tags),
            max_inbound: Some(count(self.limits.max_inbound)),
            max_outbound: Some(count(self.limits.max_outbound)),
            max_conns_per_ip: Some(cap(self.limits.per_ip)),
            max_conns_per_subnet: Some(cap(self.limits.per_subnet)),
        }
    }

    /// Takes the live values of `other` (the configuration of the file just saved).
    pub fn adopt_live(&mut self, other: &Config) {
        self.blobs = other.blobs;
        self.dht_tags = other.dht_tags;
        self.limits = other.limits;
    }

    /// The values that take effect at the next start, as this configuration has them,
    /// written as `config.toml` would.
    pub fn fixed(&self) -> Vec<FixedSetting> {
        let list = |items: Vec<String>| {
            Value::Array(items.into_iter().collect()).to_string().trim().to_owned()
        };
        let string = |s: &str| Value::from(s).to_string().trim().to_owned();
        let web = match self.web {
            WebSetting::Off => string("off"),
            WebSetting::Default => {
                format!("{} (or a free port)", string(&format!("127.0.0.1:{DEFAULT_WEB_PORT}")))
            }
            WebSetting::At(addr) => string(&addr.to_string()),
        };
        let entries = [
            ("listen", list(self.listen.iter().map(ToString::to_string).collect())),
            ("bootstrap", list(self.bootstrap.iter().map(ToString::to_string).collect())),
            ("mdns", self.mdns.to_string()),
            ("relay", string(self.relay.as_str())),
            ("store_cache_mb", self.store_cache_mb.to_string()),
            ("web", web),
        ];
        entries.into_iter().map(|(key, value)| FixedSetting { key: key.into(), value }).collect()
    }
}

/// One change as a TOML value.
fn changes(set: &LiveSettings) -> Result<Vec<(&'static str, Value)>, ConfigError> {
    let number = |field: &'static str, n: Option<u64>| {
        n.map(|n| {
            i64::try_from(n)
                .map(|n| (field, Value::from(n)))
                .map_err(|_| ConfigError::Invalid { field, message: format!("{n}: too large") })
        })
    };
    let numbers = [
        number("max_blob_mb", set.max_blob_mb),
        number("blob_quota_mb", set.blob_quota_mb),
        number("thumbnail_budget_mb", set.thumbnail_budget_mb),
        number("blob_upload_kib_s", set.blob_upload_kib_s),
        number("max_inbound", set.max_inbound),
        number("max_outbound", set.max_outbound),
        number("max_conns_per_ip", set.max_conns_per_ip),
        number("max_conns_per_subnet", set.max_conns_per_subnet),
    ];
    let mut out = numbers.into_iter().flatten().collect::<Result<Vec<_>, _>>()?;
    if let Some(on) = set.dht_tags {
        out.push(("dht_tags", Value::from(on)));
    }
    Ok(out)
}

/// `text` with the changes of `set` made: a value already in it is replaced in place
/// (its comments kept), a new one added at the end of the top-level keys.
///
/// # Errors
/// The text is not TOML, or a value is out of range.
pub fn edit(path: &Path, text: &str, set: &LiveSettings) -> Result<String, ConfigError> {
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        ConfigError::Parse { path: path.display().to_string(), message: e.to_string() }
    })?;
    for (key, mut value) in changes(set)? {
        match doc.get_mut(key).and_then(Item::as_value_mut) {
            Some(old) => {
                *value.decor_mut() = old.decor().clone();
                *old = value;
            }
            None => doc[key] = Item::Value(value),
        }
    }
    Ok(doc.to_string())
}

/// Saves the changes of `set` to the config file at `path` (created if missing),
/// keeping everything else in it, and returns the configuration the saved file gives,
/// checked as at the node's start: a bad value is refused and the file left as it was.
/// The file is replaced at once (written aside, flushed, renamed), keeping its mode.
///
/// # Errors
/// A value out of range, a file that is not valid, or a file error.
pub fn save(path: &Path, set: &LiveSettings) -> Result<Config, ConfigError> {
    let old = read_file(path)?;
    let new = edit(path, &old, set)?;
    let config = Config::from_text(path, &new, &Overrides::default())?;
    if new != old {
        write_replacing(path, &new)
            .map_err(|source| ConfigError::Write { path: path.display().to_string(), source })?;
    }
    Ok(config)
}

fn write_replacing(path: &Path, text: &str) -> io::Result<()> {
    // A config file that is a link to the person's own file (kept with their dotfiles)
    // stays a link: the file it points to is replaced.
    let path = &match fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_owned(),
        Err(e) => return Err(e),
    };
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => NEW_FILE_MODE,
        Err(e) => return Err(e),
    };
    let mut aside = path.as_os_str().to_owned();
    aside.push(".new");
    let aside = std::path::PathBuf::from(aside);
    let mut file = fs::File::create(&aside)?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&aside, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saving_keeps_comments_and_other_lines_and_checks_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        Config::write_initial(&path, Some("Ann")).unwrap();
        let before = fs::read_to_string(&path).unwrap();
        let text = format!("{before}blob_quota_mb = 512 # room for pictures\nmdns = false\n");
        fs::write(&path, &text).unwrap();
        let set = LiveSettings {
            blob_quota_mb: Some(100),
            dht_tags: Some(false),
            max_conns_per_ip: Some(0),
            ..LiveSettings::default()
        };
        let config = save(&path, &set).unwrap();
        assert_eq!(config.blobs.blob_quota_mb, 100);
        assert!(!config.dht_tags);
        assert_eq!(config.limits.per_ip, None);
        let after = fs::read_to_string(&path).unwrap();
        assert!(after.starts_with(&before), "{after}");
        assert!(after.contains("blob_quota_mb = 100 # room for pictures\n"), "{after}");
        assert!(after.contains("mdns = false\n") && after.contains("dht_tags = false\n"));
        let loaded = Config::load(&path, &Overrides::default()).unwrap();
        assert_eq!(loaded.live(), config.live());
        assert_eq!(loaded.name.as_deref(), Some("Ann"));

        // Out of range: refused, naming the value, and the file is left as it was.
        for (set, field) in [
            (LiveSettings { blob_quota_mb: Some(0), ..LiveSettings::default() }, "blob_quota_mb"),
            (LiveSettings { max_blob_mb: Some(1 << 40), ..LiveSettings::default() }, "max_blob_mb"),
            (
                LiveSettings { max_inbound: Some(u64::MAX), ..LiveSettings::default() },
                "max_inbound",
            ),
        ] {
            let e = save(&path, &set).unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
            assert_eq!(fs::read_to_string(&path).unwrap(), after);
        }
    }

    #[test]
    fn a_missing_file_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        save(&path, &LiveSettings { blob_upload_kib_s: Some(64), ..LiveSettings::default() })
            .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "blob_upload_kib_s = 64\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, NEW_FILE_MODE);
        // A link stays a link; the file it points to changes.
        let real = dir.path().join("dotfiles.toml");
        fs::rename(&path, &real).unwrap();
        std::os::unix::fs::symlink(&real, &path).unwrap();
        save(&path, &LiveSettings { dht_tags: Some(false), ..LiveSettings::default() }).unwrap();
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
        assert!(fs::read_to_string(&real).unwrap().contains("dht_tags = false"));
        fs::remove_file(&path).unwrap();
        fs::write(&path, "listen = [\n").unwrap();
        let e = save(&path, &LiveSettings::default()).unwrap_err().to_string();
        assert!(e.contains("config.toml"), "{e}");
    }
}
