//! `codec.decode` of the real component (`component/checkpoint.wasm`, run by wasmtime through
//! `checkpoint_host::Codec`) on arbitrary bytes: the call always completes (no trap, no runtime
//! error), answers only a checkpoint or `corrupt`, and agrees with the native decoder. Each input
//! is tried as it is and with its frame (length, CRC) made valid, so the body parser is reached.

#![no_main]

use std::sync::{Mutex, OnceLock};

use checkpoint_fuzz::with_valid_frame;
use checkpoint_guest::codec as native;
use checkpoint_guest::model as g;
use checkpoint_host::{CheckpointError, Codec, CorruptionKind, Error, corruption_kind_name};
use libfuzzer_sys::fuzz_target;

// One instance for the whole run: instantiating per input would measure wasmtime, not decode.
fn codec() -> &'static Mutex<Codec> {
    static CODEC: OnceLock<Mutex<Codec>> = OnceLock::new();
    CODEC.get_or_init(|| match Codec::new() {
        Ok(codec) => Mutex::new(codec),
        Err(error) => panic!("cannot load the component: {error:#}"),
    })
}

fuzz_target!(|bytes: &[u8]| {
    check(bytes);
    if let Some(framed) = with_valid_frame(bytes) {
        check(&framed);
    }
});

fn check(bytes: &[u8]) {
    let answer = codec()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .decode(bytes);
    let expected = native::decode(bytes);
    match (answer, expected) {
        (Ok(got), Ok(want)) => assert_eq!(to_native(got), want, "decoded values differ"),
        (Err(Error::Checkpoint(CheckpointError::Corrupt(got))), Err(want)) => assert_eq!(
            corruption_kind_name(got.kind),
            kind_name(want.kind),
            "corruption kinds differ: component {got:?}, native {want:?}"
        ),
        (Err(Error::Runtime(error)), _) => panic!("the component did not complete: {error:#}"),
        (got, want) => panic!("component answered {got:?}, native {want:?}"),
    }
}

/// The native kind under the name the host uses, so the two enums are compared by meaning.
fn kind_name(kind: g::CorruptionKind) -> &'static str {
    use g::CorruptionKind as K;
    corruption_kind_name(match kind {
        K::Truncated => CorruptionKind::Truncated,
        K::BadMagic => CorruptionKind::BadMagic,
        K::CrcMismatch => CorruptionKind::CrcMismatch,
        K::UnknownVersion => CorruptionKind::UnknownVersion,
        K::UnknownFlags => CorruptionKind::UnknownFlags,
        K::TrailingBytes => CorruptionKind::TrailingBytes,
        K::InvalidUtf8 => CorruptionKind::InvalidUtf8,
        K::Malformed => CorruptionKind::Malformed,
        K::Misplaced => CorruptionKind::Misplaced,
    })
}

fn to_native(c: checkpoint_host::Checkpoint) -> g::Checkpoint {
    let watermark = |w: checkpoint_host::Watermark| g::Watermark {
        offset: w.offset,
        event_time_ms: w.event_time_ms,
    };
    g::Checkpoint {
        run_id: c.run_id,
        stage: c.stage,
        sequence: c.sequence,
        epoch: c.epoch,
        watermark: watermark(c.watermark),
        sources: c
            .sources
            .into_iter()
            .map(|s| g::SourcePosition {
                name: s.name,
                sequence: s.sequence,
                watermark: watermark(s.watermark),
            })
            .collect(),
        sinks: c
            .sinks
            .into_iter()
            .map(|s| g::SinkPosition {
                name: s.name,
                position: s.position,
            })
            .collect(),
        operator_states: c
            .operator_states
            .into_iter()
            .map(|s| g::OperatorState {
                name: s.name,
                state: s.state,
            })
            .collect(),
        idempotency_key: c.idempotency_key,
        at_ms: c.at_ms,
    }
}
