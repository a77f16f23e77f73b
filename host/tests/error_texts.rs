//! The words people read for each error are the component's (`codec.describe`): the Rust
//! host's `Display` must say exactly the same, so that Rust, Python and Node never drift.

use checkpoint_host::{
    CheckpointError, Codec, Corruption, CorruptionKind, Error, FencedInfo, InvalidInput,
    RegressionInfo, TooLargeInfo, Watermark,
};

fn every_case() -> Vec<CheckpointError> {
    let wm = |offset, event_time_ms| Watermark {
        offset,
        event_time_ms,
    };
    vec![
        CheckpointError::Invalid(InvalidInput {
            field: "run-id".into(),
            reason: "must not be empty".into(),
        }),
        CheckpointError::Regression(RegressionInfo {
            stored_sequence: 7,
            stored_watermark: wm(70, -5),
            attempted_sequence: 6,
            attempted_watermark: wm(60, 1),
            field: "sequence".into(),
        }),
        CheckpointError::Fenced(FencedInfo {
            stored_epoch: 3,
            attempted_epoch: 2,
        }),
        CheckpointError::Conflict("ckpt/ns/run/stage/latest changed".into()),
        CheckpointError::NotFound,
        CheckpointError::Corrupt(Corruption {
            kind: CorruptionKind::CrcMismatch,
            key: "ckpt/ns/r\u{e9}n/\"s\"/latest".into(),
            detail: "stored 0x1, computed 0x2".into(),
        }),
        CheckpointError::Corrupt(Corruption {
            kind: CorruptionKind::Truncated,
            key: String::new(),
            detail: String::new(),
        }),
        CheckpointError::Storage("reading latest: storage unavailable: down".into()),
        CheckpointError::TooLarge(TooLargeInfo {
            size: 70_000,
            limit: 65_536,
        }),
        CheckpointError::BrokenStore("listing: the storage broke its contract: order".into()),
    ]
}

#[test]
fn display_of_every_error_case_is_the_components_describe() {
    let mut codec = Codec::new().expect("codec");
    for case in every_case() {
        let from_component = codec.describe(&case).expect("describe");
        assert_eq!(Error::Checkpoint(case).to_string(), from_component);
    }
}
