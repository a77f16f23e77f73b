//! `export-stage` and `import-stage`: a stage moves byte for byte, and nothing newer, damaged
//! or pinned is ever overwritten.

use super::*;
use crate::memory::{MemoryStorage, RecordingConsumer};
use crate::model::{ImportAction, OperatorState, StageExport};

type Fixture = Checkpointer<MemoryStorage, RecordingConsumer>;

fn open_in(namespace: &str, max_retained: u32) -> Fixture {
    let options = Options {
        namespace: namespace.into(),
        max_retained,
        max_checkpoint_bytes: 1 << 20,
    };
    Checkpointer::open(
        options,
        MemoryStorage::default(),
        RecordingConsumer::default(),
    )
    .unwrap()
}

fn at(sequence: u64, epoch: u64, state_bytes: usize) -> Checkpoint {
    Checkpoint {
        run_id: "run".into(),
        stage: "stage".into(),
        sequence,
        epoch,
        watermark: Watermark {
            offset: sequence * 100,
            event_time_ms: 0,
        },
        sources: vec![],
        sinks: vec![],
        operator_states: vec![OperatorState {
            name: "window".into(),
            state: vec![sequence as u8; state_bytes],
        }],
        idempotency_key: String::new(),
        at_ms: sequence,
    }
}

/// A stage of 4 writes (ack ids stored) and a reset (#5, epoch 2), retaining #3 to #5, with a
/// savepoint of #3.
fn source() -> Fixture {
    let mut c = open_in("a", 3);
    for s in 1..=4 {
        c.write(&at(s, 1, 64), &[format!("m{s}")]).unwrap();
    }
    c.create_savepoint("run", "stage", "before-deploy", Some(3))
        .unwrap();
    c.reset(ResetRequest {
        run_id: "run".into(),
        stage: "stage".into(),
        watermark: Watermark {
            offset: 150,
            event_time_ms: 0,
        },
        sources: vec![],
        state: None,
        epoch: None,
        at_ms: 9,
    })
    .unwrap();
    c
}

/// Every key of the stage with its bytes, the namespace cut off.
fn stage_bytes(c: &mut Fixture, namespace: &str) -> Vec<(String, Vec<u8>)> {
    let storage = c.storage_mut();
    storage
        .keys()
        .into_iter()
        .map(|key| {
            let bytes = storage.raw(&key).unwrap().value.clone();
            let key = key.replacen(&format!("ckpt/{namespace}/"), "", 1);
            (key, bytes)
        })
        .collect()
}

#[test]
fn a_stage_moves_byte_for_byte_and_an_import_again_writes_nothing() {
    let mut a = source();
    let export = a.export_stage("run", "stage").unwrap();
    assert!(export.latest.is_some());
    assert_eq!(export.retained.len(), 3);
    assert_eq!(export.savepoints.len(), 1);
    assert_eq!(export.savepoints[0].name, "before-deploy");

    let mut b = open_in("b", 3);
    let planned = b.import_stage(export.clone(), false, true).unwrap();
    assert_eq!(planned.action, ImportAction::Created);
    assert!(
        b.storage_mut().keys().is_empty(),
        "a dry run writes nothing"
    );
    let receipt = b.import_stage(export.clone(), false, false).unwrap();
    assert_eq!(receipt, planned);
    assert_eq!((receipt.keys_written, receipt.keys_removed), (5, 0));
    assert_eq!(stage_bytes(&mut a, "a"), stage_bytes(&mut b, "b"));

    // The copy is the stage: same history (reset record included), same recovered acks,
    // and the old epoch is fenced there too.
    let page = |c: &mut Fixture| {
        c.history_page(
            "run",
            "stage",
            &HistoryRequest {
                after_sequence: 0,
                max_checkpoints: 100,
                max_bytes: 0,
            },
        )
        .unwrap()
    };
    assert_eq!(page(&mut a), page(&mut b));
    assert_eq!(
        b.write(&at(6, 1, 8), &[]).unwrap_err(),
        Error::Fenced(FencedInfo {
            stored_epoch: 2,
            attempted_epoch: 1
        })
    );

    let again = b.import_stage(export, false, false).unwrap();
    assert_eq!(again.action, ImportAction::Identical);
    assert_eq!(again.keys_written, 0);
}

#[test]
fn an_older_stage_is_replaced_only_when_asked_and_its_stale_copies_go() {
    let mut a = source();
    let mut b = open_in("b", 3);
    for s in 1..=2 {
        b.write(&at(s, 1, 8), &[]).unwrap();
    }
    let before = stage_bytes(&mut b, "b");
    let export = a.export_stage("run", "stage").unwrap();
    let refused = b.import_stage(export.clone(), false, false).unwrap_err();
    assert!(
        matches!(&refused, Error::Invalid(i) if i.field == "replace-older"),
        "{refused:?}"
    );
    assert_eq!(stage_bytes(&mut b, "b"), before, "a refusal writes nothing");
    let refused_dry = b.import_stage(export.clone(), false, true).unwrap_err();
    assert_eq!(refused_dry, refused, "a dry run refuses the same way");

    let planned = b.import_stage(export.clone(), true, true).unwrap();
    assert_eq!(planned.action, ImportAction::Replaced);
    let receipt = b.import_stage(export, true, false).unwrap();
    assert_eq!(receipt, planned);
    // #1 and #2 of the old chain are not in the export (it retains #3 to #5).
    assert_eq!(receipt.keys_removed, 2);
    assert_eq!(stage_bytes(&mut a, "a"), stage_bytes(&mut b, "b"));
}

#[test]
fn a_newer_or_later_epoch_stage_or_another_savepoint_is_never_overwritten() {
    let mut a = source(); // latest #5 epoch 2
    let export = a.export_stage("run", "stage").unwrap();

    let mut newer = open_in("b", 3);
    newer.write(&at(7, 2, 8), &[]).unwrap();
    let err = newer.import_stage(export.clone(), true, false).unwrap_err();
    assert!(
        matches!(&err, Error::Regression(r) if r.stored_sequence == 7 && r.attempted_sequence == 5),
        "{err:?}"
    );

    let mut later_epoch = open_in("b", 3);
    later_epoch.write(&at(1, 9, 8), &[]).unwrap();
    let err = later_epoch
        .import_stage(export.clone(), true, false)
        .unwrap_err();
    assert_eq!(
        err,
        Error::Fenced(FencedInfo {
            stored_epoch: 9,
            attempted_epoch: 2
        })
    );

    let mut pinned = open_in("b", 3);
    pinned.write(&at(1, 1, 8), &[]).unwrap();
    pinned
        .create_savepoint("run", "stage", "before-deploy", None)
        .unwrap();
    let before = stage_bytes(&mut pinned, "b");
    let err = pinned
        .import_stage(export.clone(), true, false)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(i) if i.field == "savepoints"),
        "{err:?}"
    );
    assert_eq!(stage_bytes(&mut pinned, "b"), before);

    let mut damaged = open_in("b", 3);
    damaged.write(&at(1, 1, 8), &[]).unwrap();
    let key = StageKeys::new("b", "run", "stage").latest();
    let mut bytes = damaged.storage_mut().raw(&key).unwrap().value.clone();
    bytes[20] ^= 1;
    damaged.storage_mut().set_raw(&key, bytes);
    let err = damaged.import_stage(export, true, false).unwrap_err();
    assert!(matches!(&err, Error::Corrupt(c) if c.key == key), "{err:?}");
}

#[test]
fn damaged_or_misplaced_bytes_are_neither_exported_nor_imported() {
    let mut a = source();
    let export = a.export_stage("run", "stage").unwrap();

    // A flipped bit in a retained copy of the export.
    let mut flipped = export.clone();
    flipped.retained[0].bytes[14] ^= 0x10;
    let mut b = open_in("b", 3);
    let err = b.import_stage(flipped, false, false).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt(c) if c.key.is_empty() && c.detail.contains("retained copy #3")),
        "{err:?}"
    );
    // Another stage's bytes given as this one's latest.
    let mut other = export.clone();
    other.stage = "other".into();
    let err = b.import_stage(other, false, false).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt(c) if c.kind == CorruptionKind::Misplaced),
        "{err:?}"
    );
    // A retained copy given twice.
    let mut twice = export.clone();
    twice.retained.push(twice.retained[0].clone());
    let err = b.import_stage(twice, false, false).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(i) if i.field == "exported"),
        "{err:?}"
    );
    assert!(b.storage_mut().keys().is_empty());

    // Damage on the exporting side is refused, naming the key.
    let key = StageKeys::new("a", "run", "stage").history(4);
    let mut bytes = a.storage_mut().raw(&key).unwrap().value.clone();
    bytes[20] ^= 1;
    a.storage_mut().set_raw(&key, bytes);
    let err = a.export_stage("run", "stage").unwrap_err();
    assert!(matches!(&err, Error::Corrupt(c) if c.key == key), "{err:?}");
    assert_eq!(a.export_stage("run", "none").unwrap_err(), Error::NotFound);
}

#[test]
fn an_export_is_bounded_by_the_memory_limit() {
    let options = Options {
        namespace: "a".into(),
        max_retained: 10,
        max_checkpoint_bytes: 2 << 20,
    };
    let limit = 16 << 20; // one answer: 4 MiB
    let mut a = Checkpointer::open_with_memory_limit(
        options,
        limit,
        MemoryStorage::default(),
        RecordingConsumer::default(),
    )
    .unwrap();
    for s in 1..=5 {
        a.write(&at(s, 1, 1 << 20), &[]).unwrap();
    }
    let err = a.export_stage("run", "stage").unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(i) if i.field == "stage"),
        "{err:?}"
    );
    let big = StageExport {
        run_id: "run".into(),
        stage: "stage".into(),
        latest: Some(vec![0; 5 << 20]),
        retained: vec![],
        savepoints: vec![],
    };
    let err = a.import_stage(big, false, false).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(i) if i.field == "exported"),
        "{err:?}"
    );
}

#[test]
fn retained_copies_need_their_latest_and_an_import_is_conditional_on_the_latest_here() {
    let mut a = source();
    let export = a.export_stage("run", "stage").unwrap();

    // Retained copies without their latest could overwrite the copies of a newer chain.
    let mut headless = export.clone();
    headless.latest = None;
    let mut b = open_in("b", 3);
    b.write(&at(9, 5, 8), &[]).unwrap();
    let before = stage_bytes(&mut b, "b");
    let err = b.import_stage(headless, true, false).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(i) if i.field == "exported"),
        "{err:?}"
    );
    assert_eq!(stage_bytes(&mut b, "b"), before);

    // The same latest here, a retained copy missing: the copy is put, and the latest again
    // with its version, so that the commit fails if a writer moved the stage meanwhile.
    let mut c = open_in("c", 3);
    c.import_stage(export.clone(), false, false).unwrap();
    let missing = StageKeys::new("c", "run", "stage").history(3);
    c.storage_mut().remove_raw(&missing);
    let receipt = c.import_stage(export.clone(), false, false).unwrap();
    assert_eq!(receipt.action, ImportAction::Replaced);
    assert_eq!((receipt.keys_written, receipt.keys_removed), (2, 0));
    assert_eq!(stage_bytes(&mut a, "a"), stage_bytes(&mut c, "c"));
}
