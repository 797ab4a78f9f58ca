//! The wire form of [`RecordKind`]: what bincode's derive would write for the original
//! seven kinds (a `u32` variant number, then the fields in order), plus variant
//! [`ATTACHED_POST`] for a post with attachments and [`DEVICES`] for a device
//! announcement. Written out by hand so that a post
//! without attachments keeps the exact bytes it had before attachments existed.

use bincode::{
    de::Decoder,
    enc::Encoder,
    error::{AllowedEnumVariants, DecodeError, EncodeError},
    Decode, Encode,
};

use super::{Post, RecordKind};
use crate::attachment::Attachment;

const POST: u32 = 0;
const PROFILE: u32 = 1;
const FOLLOW: u32 = 2;
const UNFOLLOW: u32 = 3;
const REACTION: u32 = 4;
const REPOST: u32 = 5;
const DELETE: u32 = 6;
/// A post with at least one attachment: the post's fields, then the attachment list.
pub(super) const ATTACHED_POST: u32 = 7;
/// The author's devices: a [`crate::olm::prekey::Announcement`].
const DEVICES: u32 = 8;
const MAILBOXES: u32 = 9;
/// A circle post: a [`crate::group::GroupMessage`].
const PRIVATE: u32 = 10;

fn encode_post<E: Encoder>(post: &Post, encoder: &mut E) -> Result<(), EncodeError> {
    post.text.encode(encoder)?;
    post.reply_to.encode(encoder)?;
    post.mentions.encode(encoder)?;
    post.expires_at.encode(encoder)
}

fn decode_post<C, D: Decoder<Context = C>>(decoder: &mut D) -> Result<Post, DecodeError> {
    Ok(Post {
        text: Decode::decode(decoder)?,
        reply_to: Decode::decode(decoder)?,
        mentions: Decode::decode(decoder)?,
        expires_at: Decode::decode(decoder)?,
        attachments: Vec::new(),
    })
}

impl Encode for RecordKind {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        match self {
            Self::Post(post) if post.attachments.is_empty() => {
                POST.encode(encoder)?;
                encode_post(post, encoder)
            }
            Self::Post(post) => {
                ATTACHED_POST.encode(encoder)?;
                encode_post(post, encoder)?;
                post.attachments.encode(encoder)
            }
            Self::Profile { name, bio } => {
                PROFILE.encode(encoder)?;
                name.encode(encoder)?;
                bio.encode(encoder)
            }
            Self::Follow { target } => {
                FOLLOW.encode(encoder)?;
                target.encode(encoder)
            }
            Self::Unfollow { target } => {
                UNFOLLOW.encode(encoder)?;
                target.encode(encoder)
            }
            Self::Reaction { target, emoji } => {
                REACTION.encode(encoder)?;
                target.encode(encoder)?;
                emoji.encode(encoder)
            }
            Self::Repost { target } => {
                REPOST.encode(encoder)?;
                target.encode(encoder)
            }
            Self::Delete { target } => {
                DELETE.encode(encoder)?;
                target.encode(encoder)
            }
            Self::Devices(announcement) => {
                DEVICES.encode(encoder)?;
                announcement.encode(encoder)
            }
            Self::Mailboxes { holders } => {
                MAILBOXES.encode(encoder)?;
                holders.encode(encoder)
            }
            Self::Private(message) => {
                PRIVATE.encode(encoder)?;
                message.encode(encoder)
            }
        }
    }
}

impl<C> Decode<C> for RecordKind {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let variant = u32::decode(decoder)?;
        Ok(match variant {
            POST => Self::Post(decode_post(decoder)?),
            PROFILE => {
                Self::Profile { name: Decode::decode(decoder)?, bio: Decode::decode(decoder)? }
            }
            FOLLOW => Self::Follow { target: Decode::decode(decoder)? },
            UNFOLLOW => Self::Unfollow { target: Decode::decode(decoder)? },
            REACTION => {
                Self::Reaction { target: Decode::decode(decoder)?, emoji: Decode::decode(decoder)? }
            }
            REPOST => Self::Repost { target: Decode::decode(decoder)? },
            DELETE => Self::Delete { target: Decode::decode(decoder)? },
            ATTACHED_POST => {
                let mut post = decode_post(decoder)?;
                post.attachments = Vec::<Attachment>::decode(decoder)?;
                if post.attachments.is_empty() {
                    // That post has another (the original) encoding.
                    return Err(DecodeError::OtherString(
                        "a post with an empty attachment list is not canonical".into(),
                    ));
                }
                Self::Post(post)
            }
            DEVICES => Self::Devices(Decode::decode(decoder)?),
            MAILBOXES => Self::Mailboxes { holders: Decode::decode(decoder)? },
            PRIVATE => Self::Private(Decode::decode(decoder)?),
            found => {
                return Err(DecodeError::UnexpectedVariant {
                    type_name: "RecordKind",
                    allowed: &AllowedEnumVariants::Range { min: POST, max: PRIVATE },
                    found,
                })
            }
        })
    }
}

bincode::impl_borrow_decode!(RecordKind);
