use super::*;
use crate::model::{
    Checkpoint, CorruptionKind, OperatorState, SinkPosition, SourcePosition, Watermark,
};
use std::path::PathBuf;

pub(crate) fn minimal() -> Checkpoint {
    Checkpoint {
        run_id: "run-1".into(),
        stage: "parse".into(),
        sequence: 1,
        epoch: 1,
        watermark: Watermark {
            offset: 42,
            event_time_ms: 1_700_000_000_000,
        },
        sources: vec![],
        sinks: vec![],
        operator_states: vec![],
        idempotency_key: String::new(),
        at_ms: 1_700_000_000_500,
    }
}

pub(crate) fn full() -> Checkpoint {
    Checkpoint {
        run_id: "run/α:1".into(),
        stage: "join..windows".into(),
        sequence: 7,
        epoch: 3,
        watermark: Watermark {
            offset: u64::MAX,
            event_time_ms: -5,
        },
        sources: vec![
            SourcePosition {
                name: "orders-1".into(),
                sequence: 90,
                watermark: Watermark {
                    offset: 91,
                    event_time_ms: 10,
                },
            },
            SourcePosition {
                name: "orders-0".into(),
                sequence: 80,
                watermark: Watermark {
                    offset: 81,
                    event_time_ms: 9,
                },
            },
        ],
        sinks: vec![SinkPosition {
            name: "warehouse".into(),
            position: 1234,
        }],
        operator_states: vec![
            OperatorState {
                name: "window".into(),
                state: vec![0, 1, 2, 255],
            },
            OperatorState {
                name: "counter".into(),
                state: vec![],
            },
        ],
        idempotency_key: "3-7".into(),
        at_ms: u64::MAX,
    }
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(name)
}

/// The golden files pin format v1. Regenerate only for a deliberate new version, with
/// `CKPT_BLESS=1`, and keep the old files decoding.
#[test]
fn encoding_matches_the_golden_files_byte_for_byte() {
    for (name, checkpoint) in [("v1-minimal.bin", minimal()), ("v1-full.bin", full())] {
        let bytes = encode(&checkpoint).expect("encodes");
        let path = golden(name);
        if std::env::var_os("CKPT_BLESS").is_some() {
            std::fs::write(&path, &bytes).expect("write golden file");
        }
        let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            bytes, expected,
            "{name} changed: the v1 format must not change"
        );
        let mut canonical = checkpoint.clone();
        canonical.sources.sort_by(|a, b| a.name.cmp(&b.name));
        canonical
            .operator_states
            .sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(decode(&expected).expect("decodes"), canonical);
    }
}

#[test]
fn round_trip_sorts_named_lists_and_equal_checkpoints_give_equal_bytes() {
    let a = full();
    let mut b = full();
    b.sources.reverse();
    b.operator_states.reverse();
    assert_eq!(encode(&a).unwrap(), encode(&b).unwrap());
    let decoded = decode(&encode(&a).unwrap()).unwrap();
    assert_eq!(decoded.sources[0].name, "orders-0");
    assert_eq!(encode(&decoded).unwrap(), encode(&a).unwrap());
}

#[test]
fn encoded_len_is_exact() {
    for c in [minimal(), full()] {
        assert_eq!(encoded_len(&c), encode(&c).unwrap().len());
    }
}

#[test]
fn one_flipped_byte_anywhere_is_detected() {
    let bytes = encode(&full()).unwrap();
    for i in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[i] ^= 0x01;
        let err = decode(&damaged).expect_err("damage must be detected");
        let named = match i {
            0..4 => err.kind == CorruptionKind::BadMagic,
            // A flipped length bit makes the declared size disagree with the real one.
            8..12 => matches!(
                err.kind,
                CorruptionKind::Truncated | CorruptionKind::TrailingBytes
            ),
            // Version, flags, body and the CRC itself: the checksum catches them all.
            _ => err.kind == CorruptionKind::CrcMismatch,
        };
        assert!(named, "byte {i}: {err:?}");
    }
}

#[test]
fn every_truncation_is_named() {
    let bytes = encode(&full()).unwrap();
    for len in 0..bytes.len() {
        let err = decode(&bytes[..len]).expect_err("truncated");
        assert_eq!(err.kind, CorruptionKind::Truncated, "length {len}: {err:?}");
    }
}

#[test]
fn trailing_bytes_are_named() {
    let mut bytes = encode(&minimal()).unwrap();
    bytes.push(0);
    assert_eq!(
        decode(&bytes).unwrap_err().kind,
        CorruptionKind::TrailingBytes
    );
}

/// Rewrites a header field and fixes the CRC, as a newer writer would.
fn with_header(mut bytes: Vec<u8>, at: usize, value: u16) -> Vec<u8> {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
    let end = bytes.len() - TRAILER_LEN;
    let crc = crc32c::crc32c(&bytes[..end]);
    bytes[end..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn every_other_version_with_a_valid_crc_is_unknown_version() {
    let bytes = encode(&minimal()).unwrap();
    for version in [0u16, 2, 3, 255, 256, u16::MAX] {
        let err = decode(&with_header(bytes.clone(), 4, version)).unwrap_err();
        assert_eq!(
            err.kind,
            CorruptionKind::UnknownVersion,
            "version {version}"
        );
    }
}

#[test]
fn unknown_flags_are_rejected() {
    let bytes = encode(&minimal()).unwrap();
    assert_eq!(
        decode(&with_header(bytes, 6, 4)).unwrap_err().kind,
        CorruptionKind::UnknownFlags
    );
}

#[test]
fn ack_ids_are_stored_after_the_checkpoint_and_left_out_by_decode() {
    let ids = vec!["m-1".to_string(), String::new(), "m-3".to_string()];
    let stored = crate::codec::encode_stored(&minimal(), &ids, None).unwrap();
    let plain = encode(&minimal()).unwrap();
    assert_eq!(u16::from_le_bytes([stored[6], stored[7]]), FLAG_ACK_IDS);
    assert_eq!(stored.len(), plain.len() + 4 + 3 * 4 + 6);
    assert_eq!(decode(&stored).unwrap(), decode(&plain).unwrap());
    let decoded = decode_stored(&stored).unwrap();
    assert_eq!(decoded.ack_ids, ids);
    assert!(decoded.same_checkpoint(&stored, &plain, plain.len() - HEADER_LEN - TRAILER_LEN));
    // No ids: the plain encoding, flag clear.
    assert_eq!(
        crate::codec::encode_stored(&minimal(), &[], None).unwrap(),
        plain
    );
}

#[test]
fn an_ack_ids_flag_without_ids_is_malformed() {
    let plain = encode(&minimal()).unwrap();
    // The flag set over a body that ends right after the checkpoint: the count is missing.
    assert_eq!(
        decode(&with_header(plain, 6, 1)).unwrap_err().kind,
        CorruptionKind::Malformed
    );
}

/// Builds a body by hand with a valid header and CRC around it.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn body_of(c: &Checkpoint) -> Vec<u8> {
    let bytes = encode(c).unwrap();
    bytes[HEADER_LEN..bytes.len() - TRAILER_LEN].to_vec()
}

#[test]
fn a_huge_count_is_refused_without_allocating() {
    let mut body = body_of(&minimal());
    // The sources count sits 12 bytes before the end of a minimal body (3 empty lists).
    let at = body.len() - 12;
    body[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = decode(&framed(&body)).unwrap_err();
    assert_eq!(err.kind, CorruptionKind::Malformed);
    assert!(err.detail.contains("cannot fit"), "{err:?}");
}

#[test]
fn a_huge_string_length_is_refused() {
    let mut body = body_of(&minimal());
    body[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode(&framed(&body)).unwrap_err().kind,
        CorruptionKind::Malformed
    );
}

#[test]
fn invalid_utf8_is_named() {
    let mut body = body_of(&minimal());
    body[4] = 0xff; // first byte of "run-1"
    assert_eq!(
        decode(&framed(&body)).unwrap_err().kind,
        CorruptionKind::InvalidUtf8
    );
}

#[test]
fn unsorted_names_are_malformed() {
    let mut c = full();
    c.operator_states.sort_by(|a, b| b.name.cmp(&a.name));
    // Encode the descending order by hand: swap the two state entries in canonical bytes.
    let canonical = body_of(&full());
    let counter = [&7u32.to_le_bytes()[..], b"counter", &0u32.to_le_bytes()].concat();
    let window = [
        &6u32.to_le_bytes()[..],
        b"window",
        &4u32.to_le_bytes(),
        &[0, 1, 2, 255],
    ]
    .concat();
    let tail = [counter.clone(), window.clone()].concat();
    assert!(canonical.ends_with(&tail));
    let mut body = canonical[..canonical.len() - tail.len()].to_vec();
    body.extend_from_slice(&window);
    body.extend_from_slice(&counter);
    let err = decode(&framed(&body)).unwrap_err();
    assert_eq!(err.kind, CorruptionKind::Malformed, "{err:?}");
}

#[test]
fn a_rule_broken_inside_valid_bytes_is_malformed() {
    let mut c = minimal();
    c.sequence = 0;
    let bytes = framed(&body_of_unchecked(&c));
    assert_eq!(decode(&bytes).unwrap_err().kind, CorruptionKind::Malformed);
}

fn body_of_unchecked(c: &Checkpoint) -> Vec<u8> {
    let bytes = encode_valid(c).unwrap();
    bytes[HEADER_LEN..bytes.len() - TRAILER_LEN].to_vec()
}

#[test]
fn edge_values_round_trip() {
    let mut c = minimal();
    for (offset, time, seq) in [(0, 0, 1), (u64::MAX, i64::MAX, u64::MAX), (0, i64::MIN, 1)] {
        c.watermark = Watermark {
            offset,
            event_time_ms: time,
        };
        c.sequence = seq;
        c.epoch = seq;
        assert_eq!(decode(&encode(&c).unwrap()).unwrap(), c);
    }
}

#[test]
fn chain_signature_is_stable_and_order_sensitive() {
    let a = minimal();
    let mut b = minimal();
    b.sequence = 2;
    let ab = chain_signature(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(ab, chain_signature(&[a.clone(), b.clone()]).unwrap());
    assert_ne!(ab, chain_signature(&[b, a]).unwrap());
    assert_eq!(ab.len(), 64);
    assert_eq!(
        chain_signature(&[]).unwrap(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn resume_point_for_stage_takes_the_highest_sequence_of_that_stage() {
    let mut a = minimal();
    let mut b = minimal();
    b.sequence = 5;
    b.watermark.offset = 99;
    let mut other = minimal();
    other.stage = "other".into();
    other.sequence = 50;
    let point = resume_point_for_stage(&[b.clone(), a.clone(), other], "parse").unwrap();
    assert_eq!((point.sequence, point.watermark.offset), (5, 99));
    assert_eq!(
        resume_point_for_stage(&[a.clone()], "nope"),
        Err(Error::NotFound)
    );
    a.sequence = 5;
    assert!(matches!(
        resume_point_for_stage(&[a, b], "parse"),
        Err(Error::Invalid(_))
    ));
}
