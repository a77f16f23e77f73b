//! The operator tools: reset, savepoints, get-at, paged history, stage listing, and the
//! memory bound checked at open.

use super::*;
use crate::memory::{MemoryStorage, RecordingConsumer};
use crate::model::{OperatorState, SinkPosition, SourcePosition, StageState};

type Fixture = Checkpointer<MemoryStorage, RecordingConsumer>;

fn open(max_retained: u32) -> Fixture {
    open_limited(max_retained, 4096, 0)
}

fn open_limited(max_retained: u32, max_checkpoint_bytes: u32, memory_limit: u64) -> Fixture {
    let options = Options {
        namespace: "ns".into(),
        max_retained,
        max_checkpoint_bytes,
    };
    Checkpointer::open_with_memory_limit(
        options,
        memory_limit,
        MemoryStorage::default(),
        RecordingConsumer::default(),
    )
    .unwrap()
}

fn at(sequence: u64, epoch: u64, offset: u64) -> Checkpoint {
    Checkpoint {
        run_id: "run".into(),
        stage: "stage".into(),
        sequence,
        epoch,
        watermark: Watermark {
            offset,
            event_time_ms: offset as i64 * 10,
        },
        sources: vec![],
        sinks: vec![SinkPosition {
            name: "out".into(),
            position: offset,
        }],
        operator_states: vec![OperatorState {
            name: "count".into(),
            state: offset.to_le_bytes().to_vec(),
        }],
        idempotency_key: String::new(),
        at_ms: sequence * 1000,
    }
}

fn to_offset(offset: u64, epoch: Option<u64>) -> ResetRequest {
    ResetRequest {
        run_id: "run".into(),
        stage: "stage".into(),
        watermark: Watermark {
            offset,
            event_time_ms: 0,
        },
        sources: vec![],
        state: None,
        epoch,
        at_ms: 99_000,
    }
}

fn keys() -> StageKeys {
    StageKeys::new("ns", "run", "stage")
}

#[test]
fn a_reset_moves_the_stage_back_and_fences_every_older_writer() {
    let mut c = open(5);
    for s in 1..=3 {
        c.write(&at(s, 2, s * 100), &[]).unwrap();
    }
    let receipt = c.reset(to_offset(50, None)).unwrap();
    assert_eq!(
        (receipt.checkpoint.sequence, receipt.checkpoint.epoch),
        (4, 3)
    );
    assert_eq!(receipt.checkpoint.watermark.offset, 50);
    assert_eq!(
        receipt.origin,
        ResetOrigin {
            from_sequence: 3,
            from_epoch: 2,
            from_watermark: at(3, 2, 300).watermark,
            savepoint: None,
        }
    );
    // The stored state is kept when none is given.
    assert_eq!(
        receipt.checkpoint.operator_states,
        at(3, 2, 300).operator_states
    );
    let resume = c.resume_point("run", "stage").unwrap();
    assert_eq!((resume.point.watermark.offset, resume.point.epoch), (50, 3));
    // The old owner is fenced; the new one continues from the reset position.
    assert!(matches!(
        c.write(&at(5, 2, 400), &[]),
        Err(Error::Fenced(FencedInfo {
            stored_epoch: 3,
            attempted_epoch: 2
        }))
    ));
    let mut next = at(5, 3, 60);
    next.watermark.event_time_ms = 0;
    c.write(&next, &[]).unwrap();
    // The history says which checkpoint was the reset, and from where.
    let page = c
        .history_page(
            "run",
            "stage",
            &HistoryRequest {
                after_sequence: 0,
                max_checkpoints: 10,
                max_bytes: 0,
            },
        )
        .unwrap();
    let resets: Vec<_> = page
        .entries
        .iter()
        .map(|e| {
            (
                e.checkpoint.sequence,
                e.reset.as_ref().map(|r| r.from_sequence),
            )
        })
        .collect();
    assert_eq!(
        resets,
        [(1, None), (2, None), (3, None), (4, Some(3)), (5, None)]
    );
    // `get` and the codec leave the record out: the checkpoint itself is unchanged.
    assert_eq!(c.get_at("run", "stage", 4).unwrap(), receipt.checkpoint);
}

#[test]
fn a_reset_needs_an_epoch_above_the_stored_one_and_changes_nothing_otherwise() {
    let mut c = open(3);
    c.write(&at(1, 4, 10), &[]).unwrap();
    let before = c.storage_mut().clone();
    for epoch in [3, 4] {
        let err = c.reset(to_offset(0, Some(epoch))).unwrap_err();
        let Error::Invalid(invalid) = err else {
            panic!("{err:?}")
        };
        assert_eq!(invalid.field, "epoch");
        assert!(
            invalid.reason.contains("above the stored epoch 4"),
            "{invalid:?}"
        );
    }
    assert_eq!(c.storage_mut().keys(), before.keys());
    assert_eq!(c.reset(to_offset(0, Some(9))).unwrap().checkpoint.epoch, 9);
}

#[test]
fn a_reset_with_state_carries_it_and_a_reset_of_an_empty_stage_starts_it() {
    let mut c = open(3);
    let mut request = to_offset(7, None);
    request.sources = vec![SourcePosition {
        name: "p0".into(),
        sequence: 7,
        watermark: request.watermark,
    }];
    request.state = Some(StageState {
        sinks: vec![],
        operator_states: vec![],
    });
    let receipt = c.reset(request).unwrap();
    assert_eq!(
        (receipt.checkpoint.sequence, receipt.checkpoint.epoch),
        (1, 1)
    );
    assert_eq!(receipt.origin.from_sequence, 0);
    assert!(receipt.checkpoint.operator_states.is_empty());
    assert_eq!(c.get("run", "stage").unwrap().sources.len(), 1);
}

#[test]
fn a_reset_refuses_a_damaged_latest() {
    let mut c = open(3);
    c.write(&at(1, 1, 10), &[]).unwrap();
    c.storage_mut()
        .set_raw(&keys().latest(), b"damaged".to_vec());
    assert!(matches!(
        c.reset(to_offset(0, Some(5))),
        Err(Error::Corrupt(_))
    ));
}

#[test]
fn a_savepoint_survives_retention_delete_and_resets_and_restores_position_and_state() {
    let mut c = open(2);
    c.write(&at(1, 1, 10), &[]).unwrap();
    c.write(&at(2, 1, 20), &[]).unwrap();
    let info = c
        .create_savepoint("run", "stage", "before-deploy", None)
        .unwrap();
    assert_eq!(info.point.sequence, 2);
    // Creating it again is harmless; another checkpoint under the name is refused.
    assert_eq!(
        c.create_savepoint("run", "stage", "before-deploy", None)
            .unwrap(),
        info
    );
    c.create_savepoint("run", "stage", "first", Some(1))
        .unwrap();
    for s in 3..=6 {
        c.write(&at(s, 1, s * 10), &[]).unwrap();
    }
    let err = c
        .create_savepoint("run", "stage", "before-deploy", None)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(i) if i.field == "name"),
        "{err:?}"
    );
    // Retention pruned sequences 1 to 4; the savepoints still pin 1 and 2.
    assert!(matches!(c.get_at("run", "stage", 2), Err(Error::NotFound)));
    let names: Vec<_> = c
        .list_savepoints("run", "stage")
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.point.sequence))
        .collect();
    assert_eq!(names, [("before-deploy".into(), 2), ("first".into(), 1)]);
    // Restore: the position and the state of sequence 2, as a reset with a higher epoch.
    let receipt = c
        .restore_savepoint("run", "stage", "before-deploy", None, 5)
        .unwrap();
    assert_eq!(receipt.checkpoint.sequence, 7);
    assert_eq!(receipt.checkpoint.epoch, 2);
    assert_eq!(receipt.checkpoint.watermark, at(2, 1, 20).watermark);
    assert_eq!(
        receipt.checkpoint.operator_states,
        at(2, 1, 20).operator_states
    );
    assert_eq!(receipt.origin.savepoint.as_deref(), Some("before-deploy"));
    // Delete keeps savepoints; deleting one is explicit and safe to repeat.
    c.delete("run", "stage").unwrap();
    assert_eq!(c.list_savepoints("run", "stage").unwrap().len(), 2);
    assert!(c.delete_savepoint("run", "stage", "first").unwrap());
    assert!(!c.delete_savepoint("run", "stage", "first").unwrap());
    assert_eq!(
        c.get_savepoint("run", "stage", "before-deploy").unwrap(),
        at(2, 1, 20)
    );
    assert!(matches!(
        c.get_savepoint("run", "stage", "first"),
        Err(Error::NotFound)
    ));
}

#[test]
fn savepoint_names_are_bounded_and_any_characters_stay_in_their_stage() {
    let mut c = open(2);
    c.write(&at(1, 1, 10), &[]).unwrap();
    for bad in ["", &"x".repeat(129)] {
        assert!(matches!(
            c.create_savepoint("run", "stage", bad, None),
            Err(Error::Invalid(i)) if i.field == "name"
        ));
    }
    let odd = "a/b %2F s/../latest";
    c.create_savepoint("run", "stage", odd, None).unwrap();
    assert_eq!(c.list_savepoints("run", "stage").unwrap()[0].name, odd);
    assert_eq!(c.get("run", "stage").unwrap(), at(1, 1, 10));
    assert!(matches!(
        c.create_savepoint("run", "stage", "x", Some(9)),
        Err(Error::NotFound)
    ));
}

#[test]
fn get_at_reads_any_retained_sequence_and_the_latest_without_its_copy() {
    let mut c = open(3);
    for s in 1..=4 {
        c.write(&at(s, 1, s * 10), &[]).unwrap();
    }
    assert_eq!(c.get_at("run", "stage", 3).unwrap(), at(3, 1, 30));
    assert!(matches!(c.get_at("run", "stage", 1), Err(Error::NotFound)));
    c.storage_mut().remove_raw(&keys().history(4));
    assert_eq!(c.get_at("run", "stage", 4).unwrap(), at(4, 1, 40));
    c.storage_mut().set_raw(&keys().history(2), b"bad".to_vec());
    assert!(matches!(
        c.get_at("run", "stage", 2),
        Err(Error::Corrupt(_))
    ));
    let mut one = open(1);
    one.write(&at(1, 1, 10), &[]).unwrap();
    assert_eq!(one.get_at("run", "stage", 1).unwrap(), at(1, 1, 10));
}

#[test]
fn history_pages_by_count_and_bytes_and_together_equal_the_history() {
    let mut c = open(10);
    for s in 1..=7 {
        c.write(&at(s, 1, s * 10), &[]).unwrap();
    }
    let whole = c.history("run", "stage").unwrap();
    let size = codec::encoded_len(&whole[0]) as u64;
    for (max_checkpoints, max_bytes) in [(1, 0), (3, 0), (100, 2 * size + 1), (2, 1)] {
        let mut after = 0;
        let mut read = Vec::new();
        loop {
            let request = HistoryRequest {
                after_sequence: after,
                max_checkpoints,
                max_bytes,
            };
            let page = c.history_page("run", "stage", &request).unwrap();
            assert!(!page.entries.is_empty());
            assert!(page.entries.len() <= max_checkpoints as usize);
            read.extend(page.entries.into_iter().map(|e| e.checkpoint));
            match page.next_after {
                Some(next) => after = next,
                None => break,
            }
        }
        assert_eq!(read, whole, "{max_checkpoints} per page, {max_bytes} bytes");
    }
    let request = HistoryRequest {
        after_sequence: 0,
        max_checkpoints: 0,
        max_bytes: 0,
    };
    assert!(matches!(
        c.history_page("run", "stage", &request),
        Err(Error::Invalid(i)) if i.field == "max-checkpoints"
    ));
}

#[test]
fn options_the_memory_limit_cannot_serve_are_invalid_and_history_beyond_it_asks_for_pages() {
    let options = |max_checkpoint_bytes| Options {
        namespace: "ns".into(),
        max_retained: 100,
        max_checkpoint_bytes,
    };
    let limit = 64 << 20;
    let err = Fixture::open_with_memory_limit(
        options(100_000_000),
        limit,
        MemoryStorage::default(),
        RecordingConsumer::default(),
    )
    .err()
    .unwrap();
    let Error::Invalid(invalid) = err else {
        panic!("{err:?}")
    };
    assert_eq!(invalid.field, "max-checkpoint-bytes");
    assert!(
        invalid.reason.contains("67108864") && invalid.reason.contains("at most 19922944"),
        "{}",
        invalid.reason
    );
    assert!(
        Fixture::open_with_memory_limit(
            options(19_922_944),
            limit,
            MemoryStorage::default(),
            RecordingConsumer::default(),
        )
        .is_ok()
    );
    // A 12 MiB limit serves answers of 3 MiB: 10 checkpoints of 600 KB need pages.
    let mut c = open_limited(100, 700_000, 12 << 20);
    for s in 1..=10 {
        let mut checkpoint = at(s, 1, s);
        checkpoint.operator_states[0].state = vec![s as u8; 600_000];
        c.write(&checkpoint, &[]).unwrap();
    }
    let err = c.history("run", "stage").unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(i) if i.field == "history"),
        "{err:?}"
    );
    let page = c
        .history_page(
            "run",
            "stage",
            &HistoryRequest {
                after_sequence: 0,
                max_checkpoints: 100,
                max_bytes: 0,
            },
        )
        .unwrap();
    assert_eq!(page.entries.len(), 5);
    assert_eq!(page.next_after, Some(5));
}

#[test]
fn list_stages_shows_every_stage_with_its_latest_damage_and_savepoints() {
    let mut c = open(3);
    for (run, stage) in [("r1", "a"), ("r1", "b"), ("r2", "a/x")] {
        let mut checkpoint = at(1, 1, 10);
        (checkpoint.run_id, checkpoint.stage) = (run.into(), stage.into());
        c.write(&checkpoint, &[]).unwrap();
        checkpoint.sequence = 2;
        c.write(&checkpoint, &[]).unwrap();
    }
    c.create_savepoint("r1", "b", "keep", None).unwrap();
    c.storage_mut()
        .set_raw(&StageKeys::new("ns", "r1", "a").latest(), b"bad".to_vec());
    let all = c.list_stages(None).unwrap();
    let rows: Vec<_> = all
        .iter()
        .map(|s| {
            (
                s.run_id.as_str(),
                s.stage.as_str(),
                s.latest.as_ref().map(|p| p.sequence),
                s.damage.is_some(),
                s.retained,
                s.savepoints,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("r1", "a", None, true, 2, 0),
            ("r1", "b", Some(2), false, 2, 1),
            ("r2", "a/x", Some(2), false, 2, 0),
        ]
    );
    assert_eq!(all[1].at_ms, 1000);
    let mut latest = at(2, 1, 10);
    (latest.run_id, latest.stage, latest.at_ms) = ("r1".into(), "b".into(), 1000);
    assert_eq!(all[1].encoded_bytes, codec::encoded_len(&latest) as u64);
    assert_eq!(c.list_stages(Some("r2")).unwrap().len(), 1);
    assert!(c.list_stages(Some("nothing")).unwrap().is_empty());
}
