//! Signatures found valid ahead of need: a record can be checked on a spare thread before
//! the code that decides about it checks it again (a sync page that arrived while the
//! page before it is being stored), and that second check then costs a hash instead of a
//! verification.
//!
//! Only a signature that passed the strict check is remembered, and only when the caller
//! asked for it ([`remembering`]). An entry is the BLAKE3 digest of the key, the
//! signature and the whole signed message (fixed lengths first, so the framing is
//! unambiguous): a later check of exactly those bytes would give the same answer, since
//! the check is a function of them alone. Anything else (another message, another
//! signature, a digest pushed out of its slot) is verified in full.

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, PoisonError,
    },
};

use super::{PUBLIC_KEY_LEN, SIGNATURE_LEN};

/// Slots in the table: a few sync pages of records (a page holds at most 256), 128 kB.
const SLOTS: usize = 4096;

/// A remembered check: the digest of what was checked.
pub(super) type Digest = [u8; 32];

static TABLE: Mutex<[Option<Digest>; SLOTS]> = Mutex::new([None; SLOTS]);
/// Whether anything was ever remembered: until then a check does not hash at all.
static IN_USE: AtomicBool = AtomicBool::new(false);

thread_local! {
    static REMEMBERING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the signatures it finds valid remembered (on this thread).
pub(crate) fn remembering<T>(f: impl FnOnce() -> T) -> T {
    /// Puts the flag back, also when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            REMEMBERING.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(REMEMBERING.with(|r| r.replace(true)));
    f()
}

/// The digest under which a check is remembered, if a check of it may be looked up or
/// remembered now (`None`: neither, and nothing was hashed).
pub(super) fn digest(
    key: &[u8; PUBLIC_KEY_LEN],
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Option<Digest> {
    if !REMEMBERING.with(Cell::get) && !IN_USE.load(Ordering::Relaxed) {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(key).update(signature).update(message);
    Some(*hasher.finalize().as_bytes())
}

fn slot(digest: &Digest) -> usize {
    usize::from(u16::from_le_bytes([digest[0], digest[1]])) % SLOTS
}

/// Whether the check of `digest` was found valid and is still remembered.
pub(super) fn knows(digest: &Digest) -> bool {
    let table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    table[slot(digest)] == Some(*digest)
}

/// Remembers that the check of `digest` passed, if this thread is [`remembering`].
pub(super) fn passed(digest: &Digest) {
    if REMEMBERING.with(Cell::get) {
        IN_USE.store(true, Ordering::Relaxed);
        let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        table[slot(digest)] = Some(*digest);
    }
}
