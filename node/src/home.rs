//! A node's home folder: identity, config, store and control socket.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use kith_protocol::{identity::SECRET_KEY_LEN, Keypair};
use thiserror::Error;

/// File name of the identity key (32-byte ed25519 seed, mode 0600).
const IDENTITY_FILE: &str = "identity.key";
/// File name of the optional config file.
const CONFIG_FILE: &str = "config.toml";
/// Folder of the sled database.
const STORE_DIR: &str = "store";
/// Folder of pictures and files (blobs).
const BLOBS_DIR: &str = "blobs";
/// File name of the control socket.
const SOCKET_FILE: &str = "kith.sock";

/// Problems with the home folder.
#[derive(Debug, Error)]
pub enum HomeError {
    /// `kith init` on a home that already has an identity.
    #[error("{0} already holds an identity; refusing to overwrite it")]
    IdentityExists(PathBuf),
    /// No identity yet.
    #[error("no identity in {0}; create one with: kith init")]
    NoIdentity(PathBuf),
    /// The identity file is not a key.
    #[error("identity file {0} is damaged (expected {SECRET_KEY_LEN} bytes)")]
    BadIdentity(PathBuf),
    /// The OS random source failed.
    #[error("cannot generate a key: {0}")]
    Random(String),
    /// The home folder is not one kith may use: a symbolic link, not a folder, another
    /// user's, or writable by every user.
    #[error("{path} {why}; kith will not use it as a home (choose another --home)")]
    Unsafe {
        /// The home folder.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HomeError + '_ {
    move |source| HomeError::Io { path: path.to_owned(), source }
}

/// Refuses an existing home that is a symbolic link, not a folder, another user's, or
/// writable by every user.
fn check_existing(dir: &Path, meta: &fs::Metadata) -> Result<(), HomeError> {
    let unsafe_home = |why: String| Err(HomeError::Unsafe { path: dir.to_owned(), why });
    if meta.file_type().is_symlink() {
        return unsafe_home("is a symbolic link".into());
    }
    if !meta.is_dir() {
        return unsafe_home("is not a folder".into());
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return unsafe_home(format!("belongs to another user (uid {})", meta.uid()));
    }
    if meta.mode() & 0o002 != 0 {
        return unsafe_home(format!(
            "can be written by every user (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Creates `dir` with mode 0700 (its parents as the system makes them). A folder that
/// appeared meanwhile is checked like an existing home.
fn create_private(dir: &Path) -> Result<(), HomeError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // The umask may have taken bits away, never added any: the folder is ours and
            // 0700 or tighter; make it exactly 0700.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(dir).map_err(io_err(dir))?;
            check_existing(dir, &meta)
        }
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// A home folder.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// A home at `dir` (not created yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the identity key.
    pub fn identity_path(&self) -> PathBuf {
        self.dir.join(IDENTITY_FILE)
    }

    /// Path of the config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// Path of the store.
    pub fn store_path(&self) -> PathBuf {
        self.dir.join(STORE_DIR)
    }

    /// Path of the blob folder.
    pub fn blobs_path(&self) -> PathBuf {
        self.dir.join(BLOBS_DIR)
    }

    /// Path of the control socket.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join(SOCKET_FILE)
    }

    /// Creates the folder (mode 0700) if it does not exist. An existing folder is used
    /// as it is, never followed or re-moded, and only if it is a real folder (not a
    /// symbolic link) of this user that not every user may write to. The `store` and
    /// `blobs` folders are created 0700 when missing, so that what they hold stays
    /// private even in a home others may read.
    ///
    /// # Errors
    /// [`HomeError::Unsafe`], [`HomeError::Io`].
    pub fn ensure_dir(&self) -> Result<(), HomeError> {
        match fs::symlink_metadata(&self.dir) {
            Ok(meta) => check_existing(&self.dir, &meta)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_private(&self.dir)?,
            Err(e) => return Err(io_err(&self.dir)(e)),
        }
        for inner in [self.store_path(), self.blobs_path()] {
            match fs::symlink_metadata(&inner) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => create_private(&inner)?,
                Err(e) => return Err(io_err(&inner)(e)),
            }
        }
        Ok(())
    }

    /// Whether an identity exists.
    pub fn has_identity(&self) -> bool {
        self.identity_path().exists()
    }

    /// Creates a new identity; refuses to overwrite an existing one.
    ///
    /// # Errors
    /// [`HomeError::IdentityExists`], random or file errors.
    pub fn create_identity(&self) -> Result<Keypair, HomeError> {
        self.ensure_dir()?;
        let path = self.identity_path();
        let keypair = Keypair::generate().map_err(|e| HomeError::Random(e.to_string()))?;
        let mut file =
            fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(
                |e| match e.kind() {
                    io::ErrorKind::AlreadyExists => HomeError::IdentityExists(self.dir.clone()),
                    _ => HomeError::Io { path: path.clone(), source: e },
                },
            )?;
        file.write_all(keypair.secret_bytes().as_ref()).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        Ok(keypair)
    }

    /// Loads the identity.
    ///
    /// # Errors
    /// [`HomeError::NoIdentity`], [`HomeError::BadIdentity`] or file errors.
    pub fn load_identity(&self) -> Result<Keypair, HomeError> {
        let path = self.identity_path();
        let bytes = match fs::read(&path) {
            Ok(b) => zeroize::Zeroizing::new(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(HomeError::NoIdentity(self.dir.clone()))
            }
            Err(e) => return Err(HomeError::Io { path, source: e }),
        };
        let seed: [u8; SECRET_KEY_LEN] =
            bytes.as_slice().try_into().map_err(|_| HomeError::BadIdentity(path.clone()))?;
        let keypair = Keypair::from_secret_bytes(&seed);
        let mut seed = seed;
        zeroize::Zeroize::zeroize(&mut seed);
        Ok(keypair)
    }

    /// Loads the identity, creating one if the home has none.
    ///
    /// # Errors
    /// As [`Home::load_identity`] and [`Home::create_identity`].
    pub fn load_or_create_identity(&self) -> Result<(Keypair, bool), HomeError> {
        match self.load_identity() {
            Ok(k) => Ok((k, false)),
            Err(HomeError::NoIdentity(_)) => Ok((self.create_identity()?, true)),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("h"));
        assert!(matches!(home.load_identity(), Err(HomeError::NoIdentity(_))));
        let k = home.create_identity().unwrap();
        assert!(matches!(home.create_identity(), Err(HomeError::IdentityExists(_))));
        assert_eq!(home.load_identity().unwrap().id(), k.id());
        let mode = fs::metadata(home.identity_path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(home.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn damaged_identity_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        fs::write(home.identity_path(), b"short").unwrap();
        assert!(matches!(home.load_identity(), Err(HomeError::BadIdentity(_))));
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Issue #13 item 11: kith creates its home 0700, and uses an existing folder as it
    /// is (its store and blobs folders private); before, it chmodded any `--home` to 0700.
    #[test]
    fn a_home_is_created_private_and_an_existing_one_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let new = Home::new(dir.path().join("a/b/home"));
        new.ensure_dir().unwrap();
        assert_eq!(mode_of(new.dir()), 0o700);
        let existing = dir.path().join("mine");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o750)).unwrap();
        let home = Home::new(&existing);
        home.ensure_dir().unwrap();
        assert_eq!(mode_of(&existing), 0o750, "an existing folder keeps its mode");
        assert_eq!(mode_of(&home.store_path()), 0o700);
        assert_eq!(mode_of(&home.blobs_path()), 0o700);
    }

    /// Issue #13 item 11: a symlinked, world-writable or foreign-owned `--home` is refused
    /// and left untouched; before, kith followed the link and chmodded its target (with
    /// `--home /tmp`, /tmp itself became 0700).
    #[test]
    fn unsafe_homes_are_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let refused = Home::new(&link).ensure_dir();
        assert!(matches!(&refused, Err(HomeError::Unsafe { why, .. }) if why.contains("link")));
        assert_eq!(mode_of(&target), 0o755);
        assert!(!target.join("store").exists());

        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        let refused = Home::new(&shared).ensure_dir();
        assert!(
            matches!(&refused, Err(HomeError::Unsafe { why, .. }) if why.contains("every user"))
        );
        assert_eq!(mode_of(&shared), 0o1777);

        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(matches!(Home::new(&file).ensure_dir(), Err(HomeError::Unsafe { .. })));

        // Another user's folder: only root can make one.
        if rustix::process::geteuid().is_root() {
            let theirs = dir.path().join("theirs");
            fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let refused = Home::new(&theirs).ensure_dir();
            assert!(
                matches!(&refused, Err(HomeError::Unsafe { why, .. }) if why.contains("another user"))
            );
        } else {
            println!("SKIPPED the foreign-owned case: not root");
        }
    }
}
