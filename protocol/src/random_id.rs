//! Ids chosen at random by whoever makes the thing they name (a direct message, a group),
//! shown as lower-case hex.

/// Defines `$name`, a `$len`-byte random id with `generate`, `from_bytes`, `as_bytes`,
/// hex `Display`/`Debug`, and `FromStr` (hex of either case, surrounding white space
/// ignored) refused with `$error`, whose message calls it `$what`.
macro_rules! random_id {
    ($(#[$meta:meta])* $name:ident, $error:ident, $len:expr, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, bincode::Encode, bincode::Decode)]
        pub struct $name([u8; $len]);

        impl $name {
            /// A new random id from the operating system's random source.
            ///
            /// # Errors
            /// Fails only if the OS random source fails.
            pub fn generate() -> Result<Self, getrandom::Error> {
                let mut bytes = [0u8; $len];
                getrandom::fill(&mut bytes)?;
                Ok(Self(bytes))
            }

            /// Wraps raw id bytes.
            pub fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// The raw id bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        #[doc = concat!("Why ", $what, " string was refused.")]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $error(pub String);

        impl std::fmt::Display for $error {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "not {} ({} hex digits): {:?}", $what, 2 * $len, self.0)
            }
        }

        impl std::error::Error for $error {}

        impl std::str::FromStr for $name {
            type Err = $error;

            /// Parses the hex digits of either case, ignoring surrounding white space.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s.trim(), &mut out).map_err(|_| $error(s.to_owned()))?;
                Ok(Self(out))
            }
        }
    };
}

pub(crate) use random_id;
