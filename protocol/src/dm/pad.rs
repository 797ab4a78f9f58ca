//! The padding of direct message plaintexts, shared by `/kith/dm/1` and `/kith/dm/2`: a
//! `u32` LE length, the body, then zeros up to a multiple of [`DM_PAD_BLOCK`] bytes.

use zeroize::Zeroizing;

use super::{DmError, Plain, MAX_PADDED_BYTES};
use crate::{codec, limits::DM_PAD_BLOCK};

/// `u32` LE length of the encoded [`Plain`], the encoding, then zeros up to
/// [`padded_len`].
pub(super) fn pad(plain: &Plain) -> Result<Zeroizing<Vec<u8>>, DmError> {
    plain.check()?;
    let body = Zeroizing::new(codec::encode(plain)?);
    pad_body(&body, MAX_PADDED_BYTES)
}

/// `u32` LE length of `body`, the body, then zeros up to a multiple of [`DM_PAD_BLOCK`]
/// (the padding of `/kith/dm/1` and `/kith/dm/2`), refusing a result over `max` bytes.
pub(crate) fn pad_body(body: &[u8], max: usize) -> Result<Zeroizing<Vec<u8>>, DmError> {
    let too_long = || DmError::TooLarge { len: body.len(), max };
    let body_len = u32::try_from(body.len()).map_err(|_| too_long())?;
    let total = (4 + body.len()).div_ceil(DM_PAD_BLOCK) * DM_PAD_BLOCK;
    if total > max {
        return Err(too_long());
    }
    let mut padded = Zeroizing::new(Vec::with_capacity(total));
    padded.extend_from_slice(&codec::encode(&body_len)?);
    padded.extend_from_slice(body);
    padded.resize(total, 0);
    Ok(padded)
}

/// Reverses [`pad`], refusing anything [`pad`] would not have produced.
pub(super) fn unpad(padded: &[u8]) -> Result<Plain, DmError> {
    let plain = Plain::decode_body(unpad_body(padded)?)?;
    plain.check()?;
    Ok(plain)
}

/// Reverses [`pad_body`]: the body, refusing a length prefix that does not fit the
/// padded length exactly (no extra blocks) and any non-zero padding byte.
pub(crate) fn unpad_body(padded: &[u8]) -> Result<&[u8], DmError> {
    let (prefix, rest) = padded
        .split_at_checked(4)
        .ok_or_else(|| DmError::Malformed("plaintext shorter than its length prefix".into()))?;
    let body_len = codec::decode::<u32, 4>(prefix)? as usize;
    let expected = body_len
        .checked_add(4)
        .and_then(|n| n.checked_next_multiple_of(DM_PAD_BLOCK))
        .ok_or_else(|| DmError::Malformed("plaintext length out of range".into()))?;
    if expected != padded.len() {
        return Err(DmError::Malformed(format!(
            "plaintext length {body_len} does not fit {} padded bytes",
            padded.len()
        )));
    }
    let (body, padding) = rest
        .split_at_checked(body_len)
        .ok_or_else(|| DmError::Malformed("plaintext length out of range".into()))?;
    if padding.iter().any(|&b| b != 0) {
        return Err(DmError::Malformed("non-zero padding".into()));
    }
    Ok(body)
}
