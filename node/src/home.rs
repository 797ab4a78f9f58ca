//! A node's home folder: identity, config, store and control socket.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
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

    /// Creates the folder (mode 0700) if needed, and tightens its mode if it is ours.
    ///
    /// # Errors
    /// [`HomeError::Io`].
    pub fn ensure_dir(&self) -> Result<(), HomeError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err(&self.dir))?;
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
}
