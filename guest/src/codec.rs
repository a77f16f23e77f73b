//! The checkpoint binary format, version 1. `FORMAT.md` at the repository root documents every
//! byte; the golden files in `tests/golden/` pin it.
//!
//! Layout: a 12-byte header (magic `CKPT`, version u16, flags u16, body length u32), the body,
//! and a CRC32C (Castagnoli) over every byte before it. All integers are little-endian; strings
//! and byte strings are a u32 length followed by the bytes; named lists are a u32 count followed
//! by entries in strictly ascending byte order of their names, so equal checkpoints always give
//! equal bytes.
//!
//! The header and trailer keep this shape in every version, so the checksum is checked before
//! the version: a damaged version field reads as damage, a real newer version as `unknown-version`.

use crate::errors::{corruption, invalid};
use crate::model::{
    Checkpoint, Corruption, CorruptionKind, Error, OperatorState, ResetOrigin, SinkPosition,
    SourcePosition, Watermark,
};
use crate::validate::validate;

/// The first four bytes of every encoded checkpoint.
pub const MAGIC: [u8; 4] = *b"CKPT";
/// The format version this code writes.
pub const VERSION: u16 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 12;
/// Bytes after the body (the CRC32C).
pub const TRAILER_LEN: usize = 4;
/// Header flag: the body ends with the ids of the batch the write acked (FORMAT.md).
pub const FLAG_ACK_IDS: u16 = 0x0001;
/// Header flag: the body ends with where a reset moved the stage from (FORMAT.md), after the
/// ids when both are stored.
pub const FLAG_RESET: u16 = 0x0002;
/// Every header flag this version defines.
const KNOWN_FLAGS: u16 = FLAG_ACK_IDS | FLAG_RESET;
/// Longest savepoint name a reset record (and a savepoint) may carry.
pub const MAX_SAVEPOINT_NAME_BYTES: usize = 128;
/// Most ids one write may store for ack recovery.
pub const MAX_ACK_IDS: usize = 4096;
/// Most bytes of ids (their UTF-8, without length prefixes) one write may store.
pub const MAX_ACK_ID_BYTES: usize = 1 << 20;

// Smallest encodings of list entries: a name needs its length prefix and at least one byte.
const MIN_SOURCE_LEN: usize = 4 + 1 + 8 + 8 + 8;
const MIN_SINK_LEN: usize = 4 + 1 + 8;
const MIN_STATE_LEN: usize = 4 + 1 + 4;

/// The exact encoded size of `checkpoint`, computed without encoding it.
pub fn encoded_len(checkpoint: &Checkpoint) -> usize {
    HEADER_LEN + body_len(checkpoint) + TRAILER_LEN
}

fn body_len(c: &Checkpoint) -> usize {
    let text = |s: &str| 4 + s.len();
    text(&c.run_id)
        + text(&c.stage)
        + 8 * 5
        + text(&c.idempotency_key)
        + 4
        + c.sources.iter().map(|s| text(&s.name) + 24).sum::<usize>()
        + 4
        + c.sinks.iter().map(|s| text(&s.name) + 8).sum::<usize>()
        + 4
        + c.operator_states
            .iter()
            .map(|s| text(&s.name) + 4 + s.state.len())
            .sum::<usize>()
}

/// Validates and encodes `checkpoint` into its canonical bytes.
pub fn encode(checkpoint: &Checkpoint) -> Result<Vec<u8>, Error> {
    validate(checkpoint)?;
    encode_valid(checkpoint)
}

/// Encodes a checkpoint that already passed [`validate`].
pub(crate) fn encode_valid(c: &Checkpoint) -> Result<Vec<u8>, Error> {
    encode_stored(c, &[], None)
}

/// The bytes a write stores: the checkpoint, then (flag [`FLAG_ACK_IDS`]) the ids of its batch,
/// so that a crash between the commit and the acks can be repaired by acking them again. With
/// no ids this is exactly [`encode`]. `c` must have passed [`validate`] and `ack_ids` the
/// bounds [`MAX_ACK_IDS`] and [`MAX_ACK_ID_BYTES`].
///
/// A reset checkpoint also stores (flag [`FLAG_RESET`]) where the stage was before; its
/// savepoint name must be at most [`MAX_SAVEPOINT_NAME_BYTES`].
pub(crate) fn encode_stored(
    c: &Checkpoint,
    ack_ids: &[String],
    reset: Option<&ResetOrigin>,
) -> Result<Vec<u8>, Error> {
    let ids_len = if ack_ids.is_empty() {
        0
    } else {
        4 + ack_ids.iter().map(|id| 4 + id.len()).sum::<usize>()
    };
    let reset_len = reset.map_or(0, |r| {
        8 + 8 + 16 + 4 + r.savepoint.as_deref().map_or(0, str::len)
    });
    let extras_len = ids_len + reset_len;
    let body = body_len(c) + extras_len;
    let body_u32 = u32::try_from(body).map_err(|_| {
        invalid(
            "checkpoint",
            format!("encodes to {body} bytes, more than 4 GiB"),
        )
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + body + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let mut flags = if ack_ids.is_empty() { 0 } else { FLAG_ACK_IDS };
    if reset.is_some() {
        flags |= FLAG_RESET;
    }
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&body_u32.to_le_bytes());
    put_str(&mut out, &c.run_id);
    put_str(&mut out, &c.stage);
    out.extend_from_slice(&c.sequence.to_le_bytes());
    out.extend_from_slice(&c.epoch.to_le_bytes());
    put_watermark(&mut out, &c.watermark);
    out.extend_from_slice(&c.at_ms.to_le_bytes());
    put_str(&mut out, &c.idempotency_key);

    put_count(&mut out, c.sources.len());
    for s in sorted_by_name(&c.sources, |s| &s.name) {
        put_str(&mut out, &s.name);
        out.extend_from_slice(&s.sequence.to_le_bytes());
        put_watermark(&mut out, &s.watermark);
    }
    put_count(&mut out, c.sinks.len());
    for s in sorted_by_name(&c.sinks, |s| &s.name) {
        put_str(&mut out, &s.name);
        out.extend_from_slice(&s.position.to_le_bytes());
    }
    put_count(&mut out, c.operator_states.len());
    for s in sorted_by_name(&c.operator_states, |s| &s.name) {
        put_str(&mut out, &s.name);
        put_count(&mut out, s.state.len());
        out.extend_from_slice(&s.state);
    }
    if !ack_ids.is_empty() {
        put_count(&mut out, ack_ids.len());
        for id in ack_ids {
            put_str(&mut out, id);
        }
    }
    if let Some(r) = reset {
        out.extend_from_slice(&r.from_sequence.to_le_bytes());
        out.extend_from_slice(&r.from_epoch.to_le_bytes());
        put_watermark(&mut out, &r.from_watermark);
        // An empty name stands for none: savepoint names are never empty.
        put_str(&mut out, r.savepoint.as_deref().unwrap_or_default());
    }
    let crc = crate::crc::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), encoded_len(c) + extras_len);
    Ok(out)
}

/// Stored bytes, decoded: the checkpoint and the ids stored with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The ids of the batch its write acked (empty when none were stored).
    pub ack_ids: Vec<String>,
    /// Where the stage was before, when this checkpoint is a reset.
    pub reset: Option<ResetOrigin>,
    /// Body bytes that encode the checkpoint itself, before the ids.
    pub checkpoint_body_len: usize,
}

impl Decoded {
    /// True when `stored` (the bytes this was decoded from) and `other` (stored bytes whose
    /// checkpoint encodes to `other_body_len` body bytes) hold the same checkpoint, whatever
    /// ids are stored with either.
    pub(crate) fn same_checkpoint(
        &self,
        stored: &[u8],
        other: &[u8],
        other_body_len: usize,
    ) -> bool {
        let body = self.checkpoint_body_len;
        body == other_body_len
            && stored[..6] == other[..6]
            && stored[HEADER_LEN..HEADER_LEN + body] == other[HEADER_LEN..HEADER_LEN + body]
    }
}

/// The encoded size of a checkpoint whose body is `body_len` bytes.
pub(crate) fn encoded_len_of_body(body_len: usize) -> usize {
    HEADER_LEN + body_len + TRAILER_LEN
}

/// Body bytes that encode `checkpoint` itself (without stored ids).
pub(crate) fn checkpoint_body_len(checkpoint: &Checkpoint) -> usize {
    body_len(checkpoint)
}

/// The entries of a named list in name order, without copying them.
fn sorted_by_name<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<&T> {
    let mut refs: Vec<&T> = items.iter().collect();
    refs.sort_unstable_by(|a, b| name(a).cmp(name(b)));
    refs
}

// Lengths fit in u32: the whole body was checked against u32 before writing.
fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_count(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_watermark(out: &mut Vec<u8>, w: &Watermark) {
    out.extend_from_slice(&w.offset.to_le_bytes());
    out.extend_from_slice(&w.event_time_ms.to_le_bytes());
}

/// Decodes bytes made by [`encode`] or stored by a write (the ids stored with it are left out).
/// Checks, in order: length, magic, declared length (truncated / trailing bytes), CRC, version,
/// flags, then every field. Never allocates more than the input's length.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, Corruption> {
    decode_stored(bytes).map(|d| d.checkpoint)
}

/// Decodes stored bytes with the ids stored with them. Checks as [`decode`] does.
pub fn decode_stored(bytes: &[u8]) -> Result<Decoded, Corruption> {
    decode_checked(bytes, false)
}

/// Checks stored bytes exactly as [`decode_stored`] does, but leaves every operator state's
/// bytes and the stored ack ids out of the result (empty): for callers that need the position,
/// not the state, so a write holds one copy of a large stored state (its bytes), not two.
pub(crate) fn decode_positions(bytes: &[u8]) -> Result<Decoded, Corruption> {
    decode_checked(bytes, true)
}

fn decode_checked(bytes: &[u8], skip_state_bytes: bool) -> Result<Decoded, Corruption> {
    use CorruptionKind as K;
    let magic_seen = &bytes[..bytes.len().min(MAGIC.len())];
    if magic_seen != &MAGIC[..magic_seen.len()] {
        return Err(corruption(
            K::BadMagic,
            format!("first bytes {magic_seen:02x?}, expected {MAGIC:02x?}"),
        ));
    }
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(corruption(
            K::Truncated,
            format!(
                "{} bytes, a checkpoint has at least {}",
                bytes.len(),
                HEADER_LEN + TRAILER_LEN
            ),
        ));
    }
    let declared = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let expected_total = HEADER_LEN as u64 + declared as u64 + TRAILER_LEN as u64;
    if (bytes.len() as u64) < expected_total {
        return Err(corruption(
            K::Truncated,
            format!("{} bytes, header declares {expected_total}", bytes.len()),
        ));
    }
    if (bytes.len() as u64) > expected_total {
        return Err(corruption(
            K::TrailingBytes,
            format!("{} bytes, header declares {expected_total}", bytes.len()),
        ));
    }
    let crc_at = HEADER_LEN + declared;
    let stored_crc = u32::from_le_bytes([
        bytes[crc_at],
        bytes[crc_at + 1],
        bytes[crc_at + 2],
        bytes[crc_at + 3],
    ]);
    let actual_crc = crate::crc::crc32c(&bytes[..crc_at]);
    if stored_crc != actual_crc {
        return Err(corruption(
            K::CrcMismatch,
            format!("stored {stored_crc:08x}, computed {actual_crc:08x}"),
        ));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(corruption(
            K::UnknownVersion,
            format!("version {version}, this component reads {VERSION}"),
        ));
    }
    let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
    if flags & !KNOWN_FLAGS != 0 {
        return Err(corruption(
            K::UnknownFlags,
            format!("flags {flags:#06x}, version {VERSION} defines only {KNOWN_FLAGS:#06x}"),
        ));
    }
    let mut r = Reader {
        buf: &bytes[HEADER_LEN..crc_at],
        pos: 0,
        skip_state_bytes,
    };
    let checkpoint = r.checkpoint()?;
    let checkpoint_body_len = r.pos;
    let mut ack_ids = Vec::new();
    if flags & FLAG_ACK_IDS != 0 {
        let n = r.count("ack ids", 4)?;
        if n == 0 {
            return Err(corruption(
                K::Malformed,
                "the ack-ids flag is set but no id follows",
            ));
        }
        if r.skip_state_bytes {
            // Checked as strings, kept nowhere: a write reading its stored latest needs
            // neither its states nor its ids.
            for _ in 0..n {
                r.str("ack id")?;
            }
        } else {
            ack_ids.reserve_exact(n);
            for _ in 0..n {
                ack_ids.push(r.string("ack id")?);
            }
        }
    }
    let mut reset = None;
    if flags & FLAG_RESET != 0 {
        let from_sequence = r.u64("reset from-sequence")?;
        let from_epoch = r.u64("reset from-epoch")?;
        let from_watermark = r.watermark("reset from-watermark")?;
        let name = r.string("reset savepoint")?;
        if name.len() > MAX_SAVEPOINT_NAME_BYTES {
            return Err(corruption(
                K::Malformed,
                format!("reset savepoint name of {} bytes", name.len()),
            ));
        }
        reset = Some(ResetOrigin {
            from_sequence,
            from_epoch,
            from_watermark,
            savepoint: (!name.is_empty()).then_some(name),
        });
    }
    if r.pos != r.buf.len() {
        return Err(corruption(
            K::Malformed,
            format!(
                "body has {} bytes after its last field",
                r.buf.len() - r.pos
            ),
        ));
    }
    validate(&checkpoint).map_err(|e| match e {
        Error::Invalid(i) => corruption(K::Malformed, format!("{}: {}", i.field, i.reason)),
        other => corruption(K::Malformed, format!("{other:?}")),
    })?;
    Ok(Decoded {
        checkpoint,
        ack_ids,
        reset,
        checkpoint_body_len,
    })
}

/// A cursor over a body whose CRC already matched.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Check operator states and ack ids but keep them out of the result
    /// ([`decode_positions`]).
    skip_state_bytes: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Corruption> {
        let remaining = self.buf.len() - self.pos;
        if n > remaining {
            return Err(corruption(
                CorruptionKind::Malformed,
                format!(
                    "{what} needs {n} bytes at body offset {}, {remaining} left",
                    self.pos
                ),
            ));
        }
        let slice = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn u32(&mut self, what: &str) -> Result<u32, Corruption> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, Corruption> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn i64(&mut self, what: &str) -> Result<i64, Corruption> {
        Ok(self.u64(what)? as i64)
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], Corruption> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    fn string(&mut self, what: &str) -> Result<String, Corruption> {
        self.str(what).map(str::to_owned)
    }

    /// A string checked for UTF-8, borrowed from the input.
    fn str(&mut self, what: &str) -> Result<&'a str, Corruption> {
        let at = self.pos;
        let b = self.bytes(what)?;
        core::str::from_utf8(b).map_err(|e| {
            corruption(
                CorruptionKind::InvalidUtf8,
                format!("{what} at body offset {at}: {e}"),
            )
        })
    }

    fn watermark(&mut self, what: &str) -> Result<Watermark, Corruption> {
        Ok(Watermark {
            offset: self.u64(what)?,
            event_time_ms: self.i64(what)?,
        })
    }

    /// A list count, bounded by what the remaining bytes can hold, so a damaged count can never
    /// make the decoder allocate beyond the input.
    fn count(&mut self, what: &str, min_entry_len: usize) -> Result<usize, Corruption> {
        let n = self.u32(what)? as usize;
        let remaining = self.buf.len() - self.pos;
        if n > remaining / min_entry_len {
            return Err(corruption(
                CorruptionKind::Malformed,
                format!("{what} count {n} cannot fit in the {remaining} bytes left"),
            ));
        }
        Ok(n)
    }

    fn checkpoint(&mut self) -> Result<Checkpoint, Corruption> {
        let run_id = self.string("run-id")?;
        let stage = self.string("stage")?;
        let sequence = self.u64("sequence")?;
        let epoch = self.u64("epoch")?;
        let watermark = self.watermark("watermark")?;
        let at_ms = self.u64("at-ms")?;
        let idempotency_key = self.string("idempotency-key")?;

        let n = self.count("sources", MIN_SOURCE_LEN)?;
        let mut sources = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.string("source name")?;
            let sequence = self.u64("source sequence")?;
            let watermark = self.watermark("source watermark")?;
            sources.push(SourcePosition {
                name,
                sequence,
                watermark,
            });
        }
        ascending("sources", sources.iter().map(|s| s.name.as_str()))?;

        let n = self.count("sinks", MIN_SINK_LEN)?;
        let mut sinks = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.string("sink name")?;
            let position = self.u64("sink position")?;
            sinks.push(SinkPosition { name, position });
        }
        ascending("sinks", sinks.iter().map(|s| s.name.as_str()))?;

        let n = self.count("operator-states", MIN_STATE_LEN)?;
        let mut operator_states = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.string("operator-state name")?;
            let bytes = self.bytes("operator-state")?;
            let state = if self.skip_state_bytes {
                Vec::new()
            } else {
                bytes.to_vec()
            };
            operator_states.push(OperatorState { name, state });
        }
        ascending(
            "operator-states",
            operator_states.iter().map(|s| s.name.as_str()),
        )?;

        Ok(Checkpoint {
            run_id,
            stage,
            sequence,
            epoch,
            watermark,
            sources,
            sinks,
            operator_states,
            idempotency_key,
            at_ms,
        })
    }
}

/// Canonical form: names strictly ascending (which also rules out duplicates).
fn ascending<'a>(list: &str, mut names: impl Iterator<Item = &'a str>) -> Result<(), Corruption> {
    let Some(mut previous) = names.next() else {
        return Ok(());
    };
    for name in names {
        if name <= previous {
            return Err(corruption(
                CorruptionKind::Malformed,
                format!("{list}: {name:?} follows {previous:?}, names must be strictly ascending"),
            ));
        }
        previous = name;
    }
    Ok(())
}

/// Lowercase hex SHA-256 over the chain's canonical encodings, each preceded by its length as a
/// u64 (so no two different chains share a byte stream).
pub fn chain_signature(checkpoints: &[Checkpoint]) -> Result<String, Error> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (index, checkpoint) in checkpoints.iter().enumerate() {
        let bytes = encode(checkpoint).map_err(|e| prefix_field(e, index))?;
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The resume point of `stage`: its checkpoint with the highest sequence.
pub fn resume_point_for_stage(
    checkpoints: &[Checkpoint],
    stage: &str,
) -> Result<crate::model::ResumePoint, Error> {
    let mut best: Option<&Checkpoint> = None;
    for (index, checkpoint) in checkpoints
        .iter()
        .enumerate()
        .filter(|(_, c)| c.stage == stage)
    {
        validate(checkpoint).map_err(|e| prefix_field(e, index))?;
        match best {
            Some(b) if b.sequence == checkpoint.sequence && b != checkpoint => {
                return Err(invalid(
                    format!("checkpoints[{index}]"),
                    format!(
                        "sequence {} appears twice with different content",
                        checkpoint.sequence
                    ),
                ));
            }
            Some(b) if b.sequence >= checkpoint.sequence => {}
            _ => best = Some(checkpoint),
        }
    }
    best.map(crate::checkpointer::resume_point_of)
        .ok_or(Error::NotFound)
}

/// Points an `invalid` error at the list entry it came from.
fn prefix_field(error: Error, index: usize) -> Error {
    match error {
        Error::Invalid(mut i) => {
            i.field = format!("checkpoints[{index}].{}", i.field);
            Error::Invalid(i)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
