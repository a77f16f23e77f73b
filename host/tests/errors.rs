//! Exit codes and human messages of `Error`.

use checkpoint_host::{
    CheckpointError, Corruption, CorruptionKind, Error, FencedInfo, InvalidInput, RegressionInfo,
    TooLargeInfo, Watermark,
};

fn all_cases() -> Vec<(CheckpointError, i32, &'static str)> {
    let wm = |offset| Watermark {
        offset,
        event_time_ms: 5,
    };
    vec![
        (CheckpointError::NotFound, 3, "not found"),
        (
            CheckpointError::Corrupt(Corruption {
                kind: CorruptionKind::CrcMismatch,
                key: "ns/run/stage/latest".into(),
                detail: "expected 1, found 2".into(),
            }),
            4,
            "crc-mismatch at key \"ns/run/stage/latest\": expected 1, found 2",
        ),
        (
            CheckpointError::Conflict("stage changed".into()),
            5,
            "conflict: stage changed",
        ),
        (
            CheckpointError::Fenced(FencedInfo {
                stored_epoch: 7,
                attempted_epoch: 3,
            }),
            6,
            "epoch 7",
        ),
        (
            CheckpointError::Invalid(InvalidInput {
                field: "run-id".into(),
                reason: "empty".into(),
            }),
            7,
            "`run-id`: empty",
        ),
        (
            CheckpointError::Regression(RegressionInfo {
                stored_sequence: 9,
                stored_watermark: wm(100),
                attempted_sequence: 8,
                attempted_watermark: wm(90),
                field: "sequence".into(),
            }),
            8,
            "the sequence would move backwards",
        ),
        (
            CheckpointError::Storage("disk gone".into()),
            9,
            "storage failure: disk gone",
        ),
        (
            CheckpointError::TooLarge(TooLargeInfo {
                size: 5000,
                limit: 4096,
            }),
            10,
            "5000 bytes",
        ),
    ]
}

#[test]
fn every_checkpoint_error_has_its_own_nonzero_exit_code_and_a_readable_message() {
    for (case, code, text) in all_cases() {
        let error = Error::from(case);
        assert_eq!(error.exit_code(), code, "{error:?}");
        let message = error.to_string();
        assert!(message.contains(text), "{message:?} lacks {text:?}");
        assert!(
            !message.contains("RegressionInfo {"),
            "debug output leaked: {message}"
        );
    }
}

#[test]
fn wit_types_round_trip_through_json() {
    let error = CheckpointError::Regression(RegressionInfo {
        stored_sequence: 2,
        stored_watermark: Watermark {
            offset: 10,
            event_time_ms: -1,
        },
        attempted_sequence: 1,
        attempted_watermark: Watermark {
            offset: 9,
            event_time_ms: -2,
        },
        field: "sequence".into(),
    });
    let json = serde_json::to_string(&error).expect("serialize");
    let back: CheckpointError = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, error);
}
