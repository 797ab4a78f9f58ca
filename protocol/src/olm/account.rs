//! The device's Olm account and its sessions: the only module that touches vodozemac.
//!
//! A node holds one [`Device`] (its Olm account, its published fallback key and the
//! rotation state) and, for each device it talks to, one [`PeerSessions`] (the Olm
//! sessions with that device, most recently used first). Both are kept in the store only
//! as encrypted pickles ([`Device::pickle`], [`PeerSessions::pickle`]).
//!
//! Crash safety is the node's part: after [`Device::seal`] it stores the sessions'
//! pickle (flushed) before the envelope leaves, so no message key is ever used twice;
//! after [`Device::open`] it stores the sessions' pickle, and the device's when the
//! message started a session, before it answers `Delivered`.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use vodozemac::{
    olm::{
        Account, AccountPickle, DecryptionError, OlmMessage, Session, SessionConfig,
        SessionCreationError, SessionPickle,
    },
    Curve25519PublicKey,
};
use zeroize::Zeroizing;

use super::{
    device::{
        Certificate, DeviceId, DeviceKeys, SignedCertificate, VerifiedDevice, CERT_DOMAIN,
        COUNTER_DOMAIN,
    },
    envelope::{Envelope, InnerHead, OlmKind, ENVELOPE_VERSION, MAX_INNER_PADDED_BYTES},
    inner::Inner,
    pickle::PickleKey,
    prekey::{fallback_due, forget_previous_due, Prekey, PrekeyKind, SignedPrekey, PREKEY_DOMAIN},
    OlmError,
};
use crate::{
    codec,
    dm::{pad_body, unpad_body, Plain},
    identity::{AuthorId, Keypair},
};

/// Most sessions kept with one device; the least recently used is dropped beyond.
pub const MAX_SESSIONS_PER_DEVICE: usize = 4;

/// The label the device's pickle is sealed under.
const DEVICE_LABEL: &[u8] = b"device";

/// A node's device: its Olm account (the device keys, one-time keys and fallback keys),
/// the fallback key it publishes, and when that key is due for rotation.
pub struct Device {
    account: Account,
    /// The fallback key published in the person's announcement, if one was made.
    fallback: Option<SignedPrekey>,
    /// Whether a first message used `fallback` since it was made.
    fallback_used: bool,
    /// When the previous fallback key was replaced, while its secret is still kept.
    previous_rotated: Option<u64>,
}

/// What [`Device::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// What was sealed: a message, a receipt...
    pub inner: Inner,
    /// The sending person (the sender device's certificate names them).
    pub sender: AuthorId,
    /// The message started a new session (the device's pickle changed too: a one-time
    /// key was spent or the fallback key was used).
    pub new_session: bool,
}

/// The Olm sessions with one other device, most recently used first (at most
/// [`MAX_SESSIONS_PER_DEVICE`]). The first one seals new messages.
pub struct PeerSessions {
    peer: DeviceId,
    sessions: Vec<Session>,
}

/// The serialized form of a [`Device`], encrypted by [`Device::pickle`].
#[derive(Serialize, Deserialize)]
struct DevicePickle {
    account: AccountPickle,
    fallback: Option<Vec<u8>>,
    fallback_used: bool,
    previous_rotated: Option<u64>,
}

impl Device {
    /// A new device with fresh random keys.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self {
            account: Account::new(),
            fallback: None,
            fallback_used: false,
            previous_rotated: None,
        }
    }

    /// The device's public keys.
    pub fn keys(&self) -> DeviceKeys {
        let keys = self.account.identity_keys();
        DeviceKeys { curve25519: keys.curve25519.to_bytes(), ed25519: *keys.ed25519.as_bytes() }
    }

    /// The device's id.
    pub fn id(&self) -> DeviceId {
        self.keys().id()
    }

    /// The certificate of this device for `person`, made at `created_ms`: signed by the
    /// person's identity key and counter-signed by the device.
    ///
    /// # Errors
    /// Only if the codec fails, or the result does not verify (neither happens).
    pub fn certify(&self, person: &Keypair, created_ms: u64) -> Result<VerifiedDevice, OlmError> {
        let keys = self.keys();
        let certificate =
            Certificate { person: person.id(), device: keys.id(), keys, created: created_ms };
        let body = codec::encode(&certificate)?;
        let person_signature = person.sign(CERT_DOMAIN, &body);
        let device_signature = self.sign(COUNTER_DOMAIN, &body);
        SignedCertificate { certificate, person_signature, device_signature }.verify()
    }

    /// Signs `domain || message` with the device's Ed25519 key.
    fn sign(&self, domain: &[u8], message: &[u8]) -> [u8; 64] {
        self.account.sign([domain, message].concat()).to_bytes()
    }

    fn signed_prekey(
        &self,
        kind: PrekeyKind,
        key: Curve25519PublicKey,
        now_ms: u64,
    ) -> Result<SignedPrekey, OlmError> {
        let prekey = Prekey { device: self.id(), kind, key: key.to_bytes(), created: now_ms };
        let signature = self.sign(PREKEY_DOMAIN, &codec::encode(&prekey)?);
        Ok(SignedPrekey { prekey, signature })
    }

    /// The fallback key to publish: the current one, or a new one made at `now_ms` if
    /// there is none yet.
    ///
    /// # Errors
    /// Only if the codec fails.
    pub fn fallback_prekey(&mut self, now_ms: u64) -> Result<SignedPrekey, OlmError> {
        match &self.fallback {
            Some(fallback) => Ok(fallback.clone()),
            None => self.new_fallback(now_ms),
        }
    }

    /// Replaces the fallback key with a new one (the previous secret is kept until
    /// [`Device::maintain`] forgets it).
    fn new_fallback(&mut self, now_ms: u64) -> Result<SignedPrekey, OlmError> {
        if self.fallback.is_some() {
            self.previous_rotated = Some(now_ms);
        }
        self.account.generate_fallback_key();
        let key =
            self.account.fallback_key().into_values().next().ok_or_else(|| {
                OlmError::Malformed("no fallback key after generating one".into())
            })?;
        self.account.mark_keys_as_published();
        let signed = self.signed_prekey(PrekeyKind::Fallback, key, now_ms)?;
        self.fallback = Some(signed.clone());
        self.fallback_used = false;
        Ok(signed)
    }

    /// Applies the rotation rules at `now_ms` ([`forget_previous_due`],
    /// [`fallback_due`]): forgets the previous fallback secret once its grace is over,
    /// and replaces the fallback key when it was used or is old. Returns the new key when
    /// there is one: the node publishes a new announcement with it. The node calls this on
    /// a timer and after each [`Opened::new_session`], and stores the device's pickle
    /// afterwards.
    ///
    /// # Errors
    /// Only if the codec fails.
    pub fn maintain(&mut self, now_ms: u64) -> Result<Option<SignedPrekey>, OlmError> {
        if let Some(rotated) = self.previous_rotated {
            if forget_previous_due(rotated, now_ms) {
                self.account.forget_fallback_key();
                self.previous_rotated = None;
            }
        }
        let due = match &self.fallback {
            Some(current) => fallback_due(current.prekey.created, self.fallback_used, now_ms),
            None => false,
        };
        // A second rotation within the grace would drop the previous secret early: wait.
        if due && self.previous_rotated.is_none() {
            return self.new_fallback(now_ms).map(Some);
        }
        Ok(None)
    }

    /// A new one-time key for a claim ([`crate::olm::envelope::Dm2Request::Claim`]),
    /// signed by the device. Its secret stays in the account until a first message uses
    /// it (the account keeps at most a few thousand; the oldest go first), so the node
    /// should limit claims per peer.
    ///
    /// # Errors
    /// Only if the codec fails.
    pub fn claim_one_time_key(&mut self, now_ms: u64) -> Result<SignedPrekey, OlmError> {
        let created = self.account.generate_one_time_keys(1).created;
        self.account.mark_keys_as_published();
        let key = created
            .first()
            .copied()
            .ok_or_else(|| OlmError::Malformed("no one-time key after generating one".into()))?;
        self.signed_prekey(PrekeyKind::OneTime, key, now_ms)
    }

    /// Seals the message `plain` from `sender` (this device's person) for the device
    /// `to`; see [`Device::seal_inner`].
    ///
    /// # Errors
    /// As [`Device::seal_inner`].
    pub fn seal(
        &self,
        sender: &Keypair,
        sessions: &mut PeerSessions,
        to: &VerifiedDevice,
        prekey: Option<&SignedPrekey>,
        plain: &Plain,
    ) -> Result<Envelope, OlmError> {
        plain.check()?;
        let body = Zeroizing::new(Inner::encode_message(plain)?);
        self.seal_body(sender, sessions, to, prekey, body)
    }

    /// Seals `inner` (a message, a receipt...) from `sender` (this device's person) for
    /// the device `to`, with the first session of `sessions`, or, when there is none, a
    /// new session from `prekey` (a claimed one-time key, or the fallback key of `to`'s
    /// announcement).
    ///
    /// # Errors
    /// [`OlmError::DeviceMismatch`] if `sessions` or `prekey` are not `to`'s;
    /// [`OlmError::NeedPrekey`]; [`OlmError::Message`] for a plaintext over the limits;
    /// [`OlmError::Signature`]/[`OlmError::BadKey`] for a prekey that does not verify.
    pub fn seal_inner(
        &self,
        sender: &Keypair,
        sessions: &mut PeerSessions,
        to: &VerifiedDevice,
        prekey: Option<&SignedPrekey>,
        inner: &Inner,
    ) -> Result<Envelope, OlmError> {
        inner.check()?;
        let body = Zeroizing::new(inner.encode_body()?);
        self.seal_body(sender, sessions, to, prekey, body)
    }

    fn seal_body(
        &self,
        sender: &Keypair,
        sessions: &mut PeerSessions,
        to: &VerifiedDevice,
        prekey: Option<&SignedPrekey>,
        inner: Zeroizing<Vec<u8>>,
    ) -> Result<Envelope, OlmError> {
        if sessions.peer != to.id() {
            return Err(OlmError::DeviceMismatch);
        }
        let head =
            InnerHead { sender: sender.id(), sender_device: self.id(), recipient_device: to.id() };
        let mut body = Zeroizing::new(codec::encode(&head)?);
        body.extend_from_slice(&inner);
        let padded = pad_body(&body, MAX_INNER_PADDED_BYTES)?;
        if sessions.sessions.is_empty() {
            let prekey = prekey.ok_or(OlmError::NeedPrekey)?;
            prekey.verify(to)?;
            let session = self
                .account
                .create_outbound_session(
                    SessionConfig::version_1(),
                    Curve25519PublicKey::from_bytes(to.keys().curve25519),
                    Curve25519PublicKey::from_bytes(prekey.prekey.key),
                )
                .map_err(|_| OlmError::BadKey)?;
            sessions.push_front(session);
        }
        let session = sessions.sessions.first_mut().ok_or(OlmError::NeedPrekey)?;
        let message = session
            .encrypt(padded.as_slice())
            .map_err(|e| OlmError::Malformed(format!("encryption: {e}")))?;
        let (kind, olm) = match &message {
            OlmMessage::PreKey(m) => (OlmKind::PreKey, m.to_bytes()),
            OlmMessage::Normal(m) => (OlmKind::Normal, m.to_bytes()),
        };
        Ok(Envelope {
            version: ENVELOPE_VERSION,
            sender_device: self.id(),
            recipient_device: to.id(),
            kind,
            olm,
        })
    }

    /// Opens an envelope from the device `from` with the sessions held with it, creating
    /// a new session (and spending the one-time key, or marking the fallback key used)
    /// for a first message.
    ///
    /// # Errors
    /// [`OlmError::WrongRecipient`]; [`OlmError::WrongSender`] if the envelope, its
    /// sealed content or `sessions` name another sender than `from`;
    /// [`OlmError::Replay`] for a message already opened; [`OlmError::NoSession`] when no
    /// session opens it (lost session, spent key, tampering: start a new session);
    /// [`OlmError::Malformed`]/[`OlmError::Message`]/[`OlmError::Codec`] for a plaintext
    /// that is not well formed.
    pub fn open(
        &mut self,
        sessions: &mut PeerSessions,
        from: &VerifiedDevice,
        envelope: &Envelope,
    ) -> Result<Opened, OlmError> {
        let message = envelope.olm_message()?;
        if envelope.version != ENVELOPE_VERSION {
            return Err(OlmError::Malformed(format!(
                "unknown envelope version {}",
                envelope.version
            )));
        }
        if envelope.recipient_device != self.id() {
            return Err(OlmError::WrongRecipient);
        }
        if envelope.sender_device != from.id() || sessions.peer != from.id() {
            return Err(OlmError::WrongSender);
        }
        let their_key = Curve25519PublicKey::from_bytes(from.keys().curve25519);
        let (padded, new_session) = match &message {
            OlmMessage::PreKey(m) if m.identity_key() != their_key => {
                return Err(OlmError::WrongSender)
            }
            OlmMessage::PreKey(m) => match sessions.position(&m.session_id()) {
                Some(i) => (sessions.decrypt_with(i, &message)?, None),
                None => {
                    let before = self.account.stored_one_time_key_count();
                    let created = self
                        .account
                        .create_inbound_session(SessionConfig::version_1(), their_key, m)
                        .map_err(creation_error)?;
                    if self.account.stored_one_time_key_count() == before {
                        // No one-time key was spent: the fallback key was used.
                        self.fallback_used = true;
                    }
                    (Zeroizing::new(created.plaintext), Some(created.session))
                }
            },
            OlmMessage::Normal(_) => (sessions.decrypt_any(&message)?, None),
        };
        let (inner, sender) = read_plaintext(&padded, envelope, from)?;
        let started = new_session.is_some();
        if let Some(session) = new_session {
            sessions.push_front(session);
        }
        Ok(Opened { inner, sender, new_session: started })
    }

    /// The device's state, encrypted under `key` (the account's secrets included).
    ///
    /// # Errors
    /// Only if serialization fails.
    pub fn pickle(&self, key: &PickleKey) -> Result<Vec<u8>, OlmError> {
        let fallback = self.fallback.as_ref().map(codec::encode).transpose()?;
        let pickle = DevicePickle {
            account: self.account.pickle(),
            fallback,
            fallback_used: self.fallback_used,
            previous_rotated: self.previous_rotated,
        };
        key.seal_json(DEVICE_LABEL, &pickle)
    }

    /// Restores a device from [`Device::pickle`]'s bytes.
    ///
    /// # Errors
    /// [`OlmError::Pickle`] for a wrong key or changed bytes; [`OlmError::TooLarge`].
    pub fn from_pickle(bytes: &[u8], key: &PickleKey) -> Result<Self, OlmError> {
        let pickle: DevicePickle = key.open_json(DEVICE_LABEL, bytes)?;
        let fallback =
            pickle.fallback.map(|bytes| codec::decode::<SignedPrekey, 256>(&bytes)).transpose()?;
        Ok(Self {
            account: Account::from_pickle(pickle.account),
            fallback,
            fallback_used: pickle.fallback_used,
            previous_rotated: pickle.previous_rotated,
        })
    }
}

/// Decodes and checks a decrypted plaintext: padding, the inner head against the
/// envelope and the certificate, then what it carries.
fn read_plaintext(
    padded: &[u8],
    envelope: &Envelope,
    from: &VerifiedDevice,
) -> Result<(Inner, AuthorId), OlmError> {
    let body = unpad_body(padded)?;
    let (head, used) = codec::decode_prefix::<InnerHead, MAX_INNER_PADDED_BYTES>(body)?;
    if head.sender != from.person()
        || head.sender_device != envelope.sender_device
        || head.recipient_device != envelope.recipient_device
    {
        return Err(OlmError::WrongSender);
    }
    let inner = Inner::decode_body(body.get(used..).unwrap_or_default())?;
    Ok((inner, head.sender))
}

/// A session that could not be created from a pre-key message: the key it names is
/// spent or unknown, or the message does not decrypt.
fn creation_error(error: SessionCreationError) -> OlmError {
    match error {
        SessionCreationError::MismatchedIdentityKey(..) => OlmError::WrongSender,
        _ => OlmError::NoSession,
    }
}

impl PeerSessions {
    /// No sessions yet with the device `peer`.
    pub fn new(peer: DeviceId) -> Self {
        Self { peer, sessions: Vec::new() }
    }

    /// The other device.
    pub fn peer(&self) -> DeviceId {
        self.peer
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there is no session (the next message needs a prekey).
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Drops every session: after a [`crate::olm::envelope::Dm2Reply::NewSession`], the
    /// next message starts a new one from a fresh prekey.
    pub fn clear(&mut self) {
        self.sessions.clear();
    }

    fn push_front(&mut self, session: Session) {
        self.sessions.insert(0, session);
        self.sessions.truncate(MAX_SESSIONS_PER_DEVICE);
    }

    fn position(&self, session_id: &str) -> Option<usize> {
        self.sessions.iter().position(|s| s.session_id() == session_id)
    }

    /// Decrypts with session `i` and makes it the first.
    fn decrypt_with(
        &mut self,
        i: usize,
        message: &OlmMessage,
    ) -> Result<Zeroizing<Vec<u8>>, OlmError> {
        let session = self.sessions.get_mut(i).ok_or(OlmError::NoSession)?;
        let plaintext = session.decrypt(message).map_err(decryption_error)?;
        let session = self.sessions.remove(i);
        self.sessions.insert(0, session);
        Ok(Zeroizing::new(plaintext))
    }

    /// Decrypts a normal message with whichever session opens it.
    fn decrypt_any(&mut self, message: &OlmMessage) -> Result<Zeroizing<Vec<u8>>, OlmError> {
        let mut error = OlmError::NoSession;
        for i in 0..self.sessions.len() {
            match self.decrypt_with(i, message) {
                Ok(plaintext) => return Ok(plaintext),
                Err(OlmError::Replay) => error = OlmError::Replay,
                Err(_) => {}
            }
        }
        Err(error)
    }

    /// The sessions, encrypted under `key` and bound to the peer device.
    ///
    /// # Errors
    /// Only if serialization fails.
    pub fn pickle(&self, key: &PickleKey) -> Result<Vec<u8>, OlmError> {
        let pickles: Vec<SessionPickle> = self.sessions.iter().map(Session::pickle).collect();
        key.seal_json(&self.label(), &pickles)
    }

    /// Restores the sessions with `peer` from [`PeerSessions::pickle`]'s bytes.
    ///
    /// # Errors
    /// [`OlmError::Pickle`] for a wrong key, changed bytes, or the sessions of another
    /// device; [`OlmError::TooLarge`].
    pub fn from_pickle(bytes: &[u8], key: &PickleKey, peer: DeviceId) -> Result<Self, OlmError> {
        let mut sessions = Self::new(peer);
        let pickles: Vec<SessionPickle> = key.open_json(&sessions.label(), bytes)?;
        let mut seen = HashSet::new();
        sessions.sessions = pickles
            .into_iter()
            .map(Session::from_pickle)
            .filter(|s| seen.insert(s.session_id()))
            .take(MAX_SESSIONS_PER_DEVICE)
            .collect();
        Ok(sessions)
    }

    fn label(&self) -> Vec<u8> {
        [b"sessions:".as_slice(), self.peer.as_bytes()].concat()
    }
}

/// A session that did not open a message: a spent message key is a repeat; anything
/// else means this session is not the one (or the message was changed).
fn decryption_error(error: DecryptionError) -> OlmError {
    match error {
        DecryptionError::MissingMessageKey(_) => OlmError::Replay,
        _ => OlmError::NoSession,
    }
}
