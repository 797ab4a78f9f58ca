//! Who is in a group, as its creator says.
//!
//! A [`Membership`] is the complete state of one epoch: the group, the epoch number (1 at
//! creation, one more at each change), the creator, the name, every member (the creator
//! included, strictly ascending), whether members added in this epoch may read earlier
//! messages, whether the group is deleted, and the time. The creator signs its canonical
//! encoding after [`MEMBERSHIP_DOMAIN`]. Members apply epochs in order ([`Group::apply`]):
//! only a higher epoch from the same creator for the same group counts, so a replayed or
//! late change is refused. A member who leaves signs a [`Leave`] ([`LEAVE_DOMAIN`]); the
//! others stop counting them at once and the creator's next epoch leaves them out.

use std::collections::BTreeSet;

use bincode::{Decode, Encode};

use super::{
    check_version, decode_within, encode_within, strictly_ascending, GroupError, GroupId,
    GROUP_VERSION, MAX_GROUP_MEMBERS,
};
use crate::{
    codec,
    identity::{AuthorId, Keypair, SIGNATURE_LEN},
    limits::MAX_NAME_BYTES,
};

/// Domain prefix the creator signs before a membership's bytes.
pub const MEMBERSHIP_DOMAIN: &[u8] = b"kith-group-membership/1:";

/// Domain prefix a member signs before a leave notice's bytes.
pub const LEAVE_DOMAIN: &[u8] = b"kith-group-leave/1:";

/// Largest encoded signed membership: version, group, epoch, creator, the longest name,
/// [`MAX_GROUP_MEMBERS`] ids, two flags, the time and the signature.
pub const MAX_MEMBERSHIP_BYTES: usize =
    1 + 16 + 8 + 32 + (8 + MAX_NAME_BYTES) + 8 + MAX_GROUP_MEMBERS * 32 + 1 + 1 + 8 + SIGNATURE_LEN;

/// Largest encoded signed leave notice.
pub const MAX_LEAVE_BYTES: usize = 1 + 16 + 8 + 32 + 8 + SIGNATURE_LEN;

/// One epoch of a group: its whole membership.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Membership {
    /// The format version, [`GROUP_VERSION`].
    pub version: u8,
    /// The group.
    pub group: GroupId,
    /// 1 at creation, one more at each change.
    pub epoch: u64,
    /// Who made the group and alone may change it.
    pub creator: AuthorId,
    /// The group's name, as its creator chose it (at most [`MAX_NAME_BYTES`]).
    pub name: String,
    /// Every member, the creator included (none once deleted), strictly ascending.
    pub members: Vec<AuthorId>,
    /// Whether members added in this epoch may be given earlier messages.
    pub history: bool,
    /// The creator deleted the group: nobody sends to it any more.
    pub deleted: bool,
    /// When the creator made this change, ms since the Unix epoch.
    pub timestamp: u64,
}

impl Membership {
    /// A membership of `creator` and `others` (sorted and deduplicated here), with no
    /// history for new members.
    ///
    /// # Errors
    /// [`GroupError::Malformed`] as [`Membership::check`] says.
    pub fn new(
        group: GroupId,
        epoch: u64,
        creator: &AuthorId,
        name: &str,
        others: &[AuthorId],
        timestamp: u64,
    ) -> Result<Self, GroupError> {
        let members: BTreeSet<AuthorId> =
            others.iter().copied().chain(std::iter::once(*creator)).collect();
        let membership = Self {
            version: GROUP_VERSION,
            group,
            epoch,
            creator: *creator,
            name: name.to_owned(),
            members: members.into_iter().collect(),
            history: false,
            deleted: false,
            timestamp,
        };
        membership.check()?;
        Ok(membership)
    }

    /// The next epoch, which deletes the group.
    pub fn deletion(&self, timestamp: u64) -> Self {
        Self {
            epoch: self.epoch.saturating_add(1),
            members: Vec::new(),
            history: false,
            deleted: true,
            timestamp,
            ..self.clone()
        }
    }

    /// Refuses an unknown version, epoch 0, an empty or over-long name, unsorted or
    /// repeated members, too many members, a live group without its creator and a deleted
    /// one with members.
    ///
    /// # Errors
    /// [`GroupError::Malformed`].
    pub fn check(&self) -> Result<(), GroupError> {
        check_version(self.version, "membership")?;
        let bad = |what: &str| Err(GroupError::Malformed(what.to_owned()));
        if self.epoch == 0 {
            return bad("epoch 0");
        }
        if self.name.trim().is_empty() || self.name.len() > MAX_NAME_BYTES {
            return bad("a group name must have 1 to 64 bytes");
        }
        if !strictly_ascending(&self.members) {
            return bad("members not strictly ascending");
        }
        if self.members.len() > MAX_GROUP_MEMBERS {
            return bad("too many members");
        }
        if self.deleted != self.members.is_empty() {
            return bad("a deleted group has no members and a live one has some");
        }
        if !self.deleted && self.members.binary_search(&self.creator).is_err() {
            return bad("the creator is not a member");
        }
        Ok(())
    }

    /// Signs with the creator's key.
    ///
    /// # Errors
    /// [`GroupError::WrongSigner`] when `creator` is not [`Membership::creator`];
    /// [`GroupError::Malformed`] as [`Membership::check`] says.
    pub fn sign(&self, creator: &Keypair) -> Result<SignedMembership, GroupError> {
        self.check()?;
        if creator.id() != self.creator {
            return Err(GroupError::WrongSigner);
        }
        let signature = creator.sign(MEMBERSHIP_DOMAIN, &codec::encode(self)?);
        Ok(SignedMembership { membership: self.clone(), signature })
    }
}

/// A membership with its creator's signature, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SignedMembership {
    /// What the creator says.
    pub membership: Membership,
    /// The creator's signature over [`MEMBERSHIP_DOMAIN`] and the membership's encoding.
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedMembership {
    /// The canonical encoding.
    ///
    /// # Errors
    /// [`GroupError::TooLarge`] (never for one made by [`Membership::sign`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, GroupError> {
        encode_within(self, MAX_MEMBERSHIP_BYTES)
    }

    /// Decodes one from outside (size first, canonical decoding) and verifies it.
    ///
    /// # Errors
    /// As [`SignedMembership::verify`], and [`GroupError::TooLarge`] or
    /// [`GroupError::Codec`].
    pub fn from_bytes(bytes: &[u8]) -> Result<VerifiedMembership, GroupError> {
        decode_within::<Self, MAX_MEMBERSHIP_BYTES>(bytes)?.verify()
    }

    /// Checks the shape and the creator's signature.
    ///
    /// # Errors
    /// [`GroupError::Malformed`] or [`GroupError::Signature`].
    pub fn verify(self) -> Result<VerifiedMembership, GroupError> {
        self.membership.check()?;
        let body = codec::encode(&self.membership)?;
        self.membership.creator.verify(MEMBERSHIP_DOMAIN, &body, &self.signature)?;
        Ok(VerifiedMembership(self))
    }
}

/// A membership whose shape and signature were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedMembership(SignedMembership);

impl VerifiedMembership {
    /// The membership.
    pub fn membership(&self) -> &Membership {
        &self.0.membership
    }

    /// The signed form, to pass on.
    pub fn signed(&self) -> &SignedMembership {
        &self.0
    }
}

/// A member's notice that they left a group.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Leave {
    /// The format version, [`GROUP_VERSION`].
    pub version: u8,
    /// The group.
    pub group: GroupId,
    /// The epoch the member left in.
    pub epoch: u64,
    /// Who leaves (and signs).
    pub member: AuthorId,
    /// When, ms since the Unix epoch.
    pub timestamp: u64,
}

/// A leave notice with the member's signature, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SignedLeave {
    /// What the member says.
    pub leave: Leave,
    /// The member's signature over [`LEAVE_DOMAIN`] and the notice's encoding.
    pub signature: [u8; SIGNATURE_LEN],
}

impl Leave {
    /// The notice of `member` leaving `group` in `epoch`, signed.
    ///
    /// # Errors
    /// [`GroupError::Codec`] (never in practice).
    pub fn sign(
        member: &Keypair,
        group: GroupId,
        epoch: u64,
        timestamp: u64,
    ) -> Result<SignedLeave, GroupError> {
        let leave = Self { version: GROUP_VERSION, group, epoch, member: member.id(), timestamp };
        let signature = member.sign(LEAVE_DOMAIN, &codec::encode(&leave)?);
        Ok(SignedLeave { leave, signature })
    }
}

impl SignedLeave {
    /// The canonical encoding.
    ///
    /// # Errors
    /// [`GroupError::TooLarge`] (never in practice).
    pub fn to_bytes(&self) -> Result<Vec<u8>, GroupError> {
        encode_within(self, MAX_LEAVE_BYTES)
    }

    /// Decodes one from outside and checks the member's signature (not whether they are
    /// a member: [`Group::leave`] does).
    ///
    /// # Errors
    /// [`GroupError::TooLarge`], [`GroupError::Codec`], [`GroupError::Malformed`],
    /// [`GroupError::Signature`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Leave, GroupError> {
        let signed = decode_within::<Self, MAX_LEAVE_BYTES>(bytes)?;
        check_version(signed.leave.version, "leave")?;
        let body = codec::encode(&signed.leave)?;
        signed.leave.member.verify(LEAVE_DOMAIN, &body, &signed.signature)?;
        Ok(signed.leave)
    }
}

/// What applying a membership change did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Members in the new epoch who were not in the old one.
    pub added: Vec<AuthorId>,
    /// Members of the old epoch (or who had left) who are not in the new one.
    pub removed: Vec<AuthorId>,
    /// The group was deleted.
    pub deleted: bool,
}

impl Change {
    /// Whether every member must start a new outbound session: someone is gone, so the
    /// sessions they hold keys to must not carry anything more.
    pub fn rotates(&self) -> bool {
        self.deleted || !self.removed.is_empty()
    }
}

/// A group as one member knows it: the latest epoch applied and who left since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    current: VerifiedMembership,
    left: BTreeSet<AuthorId>,
}

impl Group {
    /// The group as of its first known epoch (not necessarily 1: a member added later
    /// learns the group from the epoch that added them).
    pub fn new(first: VerifiedMembership) -> Self {
        Self { current: first, left: BTreeSet::new() }
    }

    /// The group's id.
    pub fn id(&self) -> GroupId {
        self.current.membership().group
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.current.membership().epoch
    }

    /// The creator.
    pub fn creator(&self) -> AuthorId {
        self.current.membership().creator
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.current.membership().name
    }

    /// Whether the creator deleted the group.
    pub fn deleted(&self) -> bool {
        self.current.membership().deleted
    }

    /// The current epoch's signed membership, to give to a new member or a peer that is
    /// behind.
    pub fn current(&self) -> &VerifiedMembership {
        &self.current
    }

    /// The members now: the current epoch's, less those who left since.
    pub fn members(&self) -> impl Iterator<Item = &AuthorId> {
        self.current.membership().members.iter().filter(|m| !self.left.contains(m))
    }

    /// Whether `who` is a member now.
    pub fn is_member(&self, who: &AuthorId) -> bool {
        self.current.membership().members.binary_search(who).is_ok() && !self.left.contains(who)
    }

    /// Applies the creator's next epoch.
    ///
    /// # Errors
    /// [`GroupError::WrongGroup`] for another group; [`GroupError::WrongSigner`] when
    /// another person signed it (a valid signature by someone who is not the creator);
    /// [`GroupError::Stale`] for an epoch not after the current one or a change after
    /// the deletion. The group is unchanged on error.
    pub fn apply(&mut self, next: VerifiedMembership) -> Result<Change, GroupError> {
        let (now, new) = (self.current.membership(), next.membership());
        if new.group != now.group {
            return Err(GroupError::WrongGroup);
        }
        if new.creator != now.creator {
            return Err(GroupError::WrongSigner);
        }
        if new.epoch <= now.epoch || now.deleted {
            return Err(GroupError::Stale { epoch: new.epoch, current: now.epoch });
        }
        let before: BTreeSet<AuthorId> = now.members.iter().copied().collect();
        let after: BTreeSet<AuthorId> = new.members.iter().copied().collect();
        let mut removed: BTreeSet<AuthorId> = before.difference(&after).copied().collect();
        removed.extend(self.left.difference(&after));
        let change = Change {
            added: after.difference(&before).copied().collect(),
            removed: removed.into_iter().collect(),
            deleted: new.deleted,
        };
        self.current = next;
        self.left.clear();
        Ok(change)
    }

    /// Applies a member's verified leave notice: they are no longer counted (and every
    /// member rotates). Returns whether it changed anything (false for a repeat).
    ///
    /// # Errors
    /// [`GroupError::WrongGroup`]; [`GroupError::NotMember`] for someone not in the
    /// current epoch or for the creator (who deletes the group instead);
    /// [`GroupError::Stale`] for a notice from a later epoch than this member knows
    /// (apply that epoch first).
    pub fn leave(&mut self, leave: &Leave) -> Result<bool, GroupError> {
        let now = self.current.membership();
        if leave.group != now.group {
            return Err(GroupError::WrongGroup);
        }
        if leave.member == now.creator || now.members.binary_search(&leave.member).is_err() {
            return Err(GroupError::NotMember);
        }
        if leave.epoch > now.epoch {
            return Err(GroupError::Stale { epoch: leave.epoch, current: now.epoch });
        }
        Ok(self.left.insert(leave.member))
    }
}
