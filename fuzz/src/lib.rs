//! Helpers shared by the fuzz targets.

use checkpoint_guest::codec::{HEADER_LEN, TRAILER_LEN};

/// `bytes` with a correct body length and CRC32C written over its frame, or `None` when it is
/// too short to hold one. Random mutations almost never keep the CRC right, so without this the
/// fuzzer would mostly test the checksum and rarely reach the body parser.
pub fn with_valid_frame(bytes: &[u8]) -> Option<Vec<u8>> {
    let body = bytes.len().checked_sub(HEADER_LEN + TRAILER_LEN)?;
    let mut framed = bytes.to_vec();
    framed[8..12].copy_from_slice(&u32::try_from(body).ok()?.to_le_bytes());
    let crc_at = HEADER_LEN + body;
    let crc = crc32c::crc32c(&framed[..crc_at]);
    framed[crc_at..].copy_from_slice(&crc.to_le_bytes());
    Some(framed)
}
