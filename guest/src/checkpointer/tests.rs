use super::*;
use crate::keys::StageKeys;
use crate::memory::{MemoryStorage, RecordingConsumer};
use crate::model::{AckOutcome, CorruptionKind, Error, ResumeOrigin, StorageError, Watermark};

type Fixture = Checkpointer<MemoryStorage, RecordingConsumer>;

fn open(max_retained: u32) -> Fixture {
    let options = Options {
        namespace: "ns".into(),
        max_retained,
        max_checkpoint_bytes: 4096,
    };
    Checkpointer::open(
        options,
        MemoryStorage::default(),
        RecordingConsumer::default(),
    )
    .unwrap()
}

fn at(sequence: u64, offset: u64) -> Checkpoint {
    Checkpoint {
        run_id: "run".into(),
        stage: "stage".into(),
        sequence,
        epoch: 1,
        watermark: Watermark {
            offset,
            event_time_ms: offset as i64 * 10,
        },
        sources: vec![],
        sinks: vec![],
        operator_states: vec![],
        idempotency_key: String::new(),
        at_ms: sequence * 1000,
    }
}

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn keys() -> StageKeys {
    StageKeys::new("ns", "run", "stage")
}

#[test]
fn write_commits_once_then_acks_the_batch() {
    let mut c = open(1);
    let receipt = c.write(&at(1, 10), &ids(&["a", "b"])).unwrap();
    assert_eq!(receipt.acks, AckOutcome::Acked(2));
    assert!(!receipt.replayed);
    assert_eq!(c.storage_mut().calls, ["get", "list-keys", "commit"]);
    assert_eq!(c.consumer_mut().acks, [ids(&["a", "b"])]);
    assert_eq!(c.get("run", "stage").unwrap(), at(1, 10));
}

#[test]
fn a_lower_offset_than_stored_is_a_regression_and_changes_nothing() {
    let mut c = open(2);
    c.write(&at(1, 7), &ids(&["m7"])).unwrap();
    let before = c.storage_mut().clone();
    let err = c.write(&at(2, 6), &ids(&["m6"])).unwrap_err();
    let Error::Regression(info) = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (
            info.field.as_str(),
            info.stored_watermark.offset,
            info.attempted_watermark.offset
        ),
        ("offset", 7, 6)
    );
    assert_eq!(c.storage_mut().keys(), before.keys());
    assert_eq!(c.get("run", "stage").unwrap(), at(1, 7));
    assert_eq!(
        c.consumer_mut().acks,
        [ids(&["m7"])],
        "nothing acked for the refused write"
    );
    assert_eq!(
        c.storage_mut().calls.last(),
        Some(&"get"),
        "refused before any write"
    );
}

#[test]
fn a_sequence_that_does_not_grow_is_a_regression() {
    let mut c = open(1);
    c.write(&at(5, 10), &[]).unwrap();
    let err = c.write(&at(5, 11), &[]).unwrap_err();
    assert!(
        matches!(err, Error::Regression(ref i) if i.field == "sequence"),
        "{err:?}"
    );
}

#[test]
fn event_time_going_back_is_a_regression() {
    let mut c = open(1);
    c.write(&at(1, 10), &[]).unwrap();
    let mut next = at(2, 11);
    next.watermark.event_time_ms = 0;
    assert!(
        matches!(c.write(&next, &[]), Err(Error::Regression(ref i)) if i.field == "event-time")
    );
}

#[test]
fn an_older_epoch_is_fenced_even_when_it_moves_forward() {
    let mut c = open(1);
    let mut owner = at(1, 10);
    owner.epoch = 5;
    c.write(&owner, &[]).unwrap();
    let mut stale = at(2, 20);
    stale.epoch = 4;
    assert_eq!(
        c.write(&stale, &ids(&["x"])),
        Err(Error::Fenced(FencedInfo {
            stored_epoch: 5,
            attempted_epoch: 4
        }))
    );
    assert!(c.consumer_mut().acks.is_empty());
    let mut successor = at(2, 20);
    successor.epoch = 6;
    c.write(&successor, &[]).unwrap();
}

#[test]
fn invalid_input_is_refused_before_any_storage_call() {
    let mut c = open(1);
    let mut bad = at(1, 1);
    bad.run_id.clear();
    assert!(
        matches!(c.write(&bad, &ids(&["a"])), Err(Error::Invalid(ref i)) if i.field == "run-id")
    );
    let mut too_big = at(1, 1);
    too_big.operator_states.push(crate::model::OperatorState {
        name: "s".into(),
        state: vec![0; 5000],
    });
    assert!(matches!(c.write(&too_big, &[]), Err(Error::TooLarge(ref t)) if t.limit == 4096));
    assert!(c.storage_mut().calls.is_empty());
    assert!(c.consumer_mut().acks.is_empty());
}

#[test]
fn resume_with_nothing_stored_is_fresh_at_offset_zero_and_writes_nothing() {
    let mut c = open(3);
    let resume = c.resume_point("run", "stage").unwrap();
    assert_eq!(resume.origin, ResumeOrigin::Fresh);
    assert_eq!(
        (resume.point.sequence, resume.point.watermark.offset),
        (0, 0)
    );
    assert!(!c.storage_mut().calls.contains(&"commit"));
    assert_eq!(c.get("run", "stage"), Err(Error::NotFound));
    assert!(c.history("run", "stage").unwrap().is_empty());
}

#[test]
fn commit_failure_acks_nothing_changes_nothing_and_a_retry_succeeds() {
    let mut c = open(2);
    c.write(&at(1, 5), &ids(&["a"])).unwrap();
    let keys_before = c.storage_mut().keys();
    c.storage_mut().fail_next_commit = Some(StorageError::Unavailable("disk gone".into()));
    let err = c.write(&at(2, 9), &ids(&["b"])).unwrap_err();
    assert!(
        matches!(err, Error::Storage(ref m) if m.contains("disk gone")),
        "{err:?}"
    );
    assert_eq!(c.consumer_mut().acks, [ids(&["a"])]);
    assert_eq!(c.storage_mut().keys(), keys_before);
    assert_eq!(c.get("run", "stage").unwrap(), at(1, 5));
    let receipt = c.write(&at(2, 9), &ids(&["b"])).unwrap();
    assert_eq!(receipt.acks, AckOutcome::Acked(1));
    assert_eq!(c.get("run", "stage").unwrap(), at(2, 9));
}

#[test]
fn ack_failure_leaves_the_checkpoint_durable_and_says_so() {
    let mut c = open(1);
    c.consumer_mut().fail_next = 1;
    let receipt = c.write(&at(1, 5), &ids(&["a"])).unwrap();
    assert!(matches!(receipt.acks, AckOutcome::Failed(_)));
    assert_eq!(c.get("run", "stage").unwrap(), at(1, 5));
}

#[test]
fn retrying_a_committed_write_is_a_replay_that_acks_again_without_writing() {
    let mut c = open(2);
    let first = c.write(&at(1, 5), &ids(&["a"])).unwrap();
    let commits = c
        .storage_mut()
        .calls
        .iter()
        .filter(|c| **c == "commit")
        .count();
    let again = c.write(&at(1, 5), &ids(&["a"])).unwrap();
    assert!(again.replayed);
    assert_eq!(again.version, first.version);
    assert_eq!(
        c.storage_mut()
            .calls
            .iter()
            .filter(|c| **c == "commit")
            .count(),
        commits
    );
    assert_eq!(c.consumer_mut().acks, [ids(&["a"]), ids(&["a"])]);
}

#[test]
fn max_retained_two_keeps_only_the_two_newest() {
    let mut c = open(2);
    for s in 1..=3 {
        c.write(&at(s, s * 10), &[]).unwrap();
    }
    let k = keys();
    assert_eq!(
        c.storage_mut().keys(),
        [k.history(2), k.history(3), k.latest()]
    );
    let history: Vec<u64> = c
        .history("run", "stage")
        .unwrap()
        .iter()
        .map(|c| c.sequence)
        .collect();
    assert_eq!(history, [2, 3]);
}

#[test]
fn max_retained_one_keeps_only_the_latest() {
    let mut c = open(1);
    for s in 1..=3 {
        c.write(&at(s, s), &[]).unwrap();
    }
    assert_eq!(c.storage_mut().keys(), [keys().latest()]);
    assert_eq!(c.history("run", "stage").unwrap(), [at(3, 3)]);
}

#[test]
fn a_corrupt_latest_fails_closed_and_is_never_overwritten() {
    let mut c = open(1);
    c.write(&at(1, 5), &[]).unwrap();
    let mut damaged = c.storage_mut().raw(&keys().latest()).unwrap().value.clone();
    damaged[20] ^= 0x40;
    c.storage_mut().set_raw(&keys().latest(), damaged.clone());
    let err = c.write(&at(2, 6), &ids(&["a"])).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt(ref k) if k.kind == CorruptionKind::CrcMismatch && k.key == keys().latest())
    );
    assert_eq!(
        c.storage_mut().raw(&keys().latest()).unwrap().value,
        damaged
    );
    assert!(c.consumer_mut().acks.is_empty());
    assert!(matches!(c.get("run", "stage"), Err(Error::Corrupt(_))));
}

#[test]
fn resume_falls_back_to_the_newest_intact_copy_and_says_why() {
    let mut c = open(3);
    for s in 1..=3 {
        c.write(&at(s, s * 10), &[]).unwrap();
    }
    let k = keys();
    c.storage_mut().set_raw(&k.latest(), b"garbage".to_vec());
    let resume = c.resume_point("run", "stage").unwrap();
    let ResumeOrigin::Fallback(fallback) = resume.origin else {
        panic!("{resume:?}")
    };
    assert_eq!(
        resume.point.sequence, 3,
        "the intact copy of the same checkpoint"
    );
    assert_eq!(fallback.skipped[0].kind, CorruptionKind::BadMagic);
    // Damage the newest copy too: fall back one further.
    c.storage_mut().set_raw(&k.history(3), vec![]);
    let resume = c.resume_point("run", "stage").unwrap();
    assert_eq!(resume.point.sequence, 2);
    let ResumeOrigin::Fallback(fallback) = resume.origin else {
        panic!()
    };
    assert_eq!(fallback.skipped.len(), 2);
    assert!(matches!(c.history("run", "stage"), Err(Error::Corrupt(_))));
}

#[test]
fn resume_with_nothing_intact_is_corrupt_never_fresh() {
    let mut c = open(2);
    c.write(&at(1, 1), &[]).unwrap();
    c.write(&at(2, 2), &[]).unwrap();
    let k = keys();
    for key in c.storage_mut().keys() {
        c.storage_mut().set_raw(&key, vec![1, 2, 3]);
    }
    let err = c.resume_point("run", "stage").unwrap_err();
    assert!(
        matches!(err, Error::Corrupt(ref d) if d.key == k.latest()),
        "{err:?}"
    );
}

#[test]
fn a_checkpoint_stored_under_another_stages_key_is_misplaced() {
    let mut c = open(1);
    c.write(&at(1, 1), &[]).unwrap();
    let mut other = at(1, 1);
    other.stage = "other".into();
    let bytes = crate::codec::encode(&other).unwrap();
    c.storage_mut().set_raw(&keys().latest(), bytes);
    assert!(
        matches!(c.get("run", "stage"), Err(Error::Corrupt(ref d)) if d.kind == CorruptionKind::Misplaced)
    );
}

#[test]
fn delete_removes_every_key_of_the_stage_and_only_those() {
    let mut c = open(3);
    for s in 1..=3 {
        c.write(&at(s, s), &[]).unwrap();
    }
    let mut other = at(1, 1);
    other.stage = "stage2".into();
    c.write(&other, &[]).unwrap();
    assert_eq!(c.delete("run", "stage").unwrap(), 4);
    assert_eq!(c.delete("run", "stage").unwrap(), 0);
    assert_eq!(c.get("run", "stage"), Err(Error::NotFound));
    assert_eq!(c.get("run", "stage2").unwrap(), other);
}

#[test]
fn ids_with_separators_never_share_keys() {
    let mut c = open(2);
    let pairs = [
        ("a/b", "c"),
        ("a", "b/c"),
        ("a:b", "c"),
        ("a", "b:c"),
        ("..", "/"),
        ("\0", "ü\n"),
    ];
    for (i, (run, stage)) in pairs.iter().enumerate() {
        let mut cp = at(1, i as u64);
        cp.run_id = run.to_string();
        cp.stage = stage.to_string();
        c.write(&cp, &[]).unwrap();
    }
    for (i, (run, stage)) in pairs.iter().enumerate() {
        assert_eq!(c.get(run, stage).unwrap().watermark.offset, i as u64);
    }
}

#[test]
fn options_are_validated() {
    let bad = [
        Options {
            namespace: "".into(),
            max_retained: 1,
            max_checkpoint_bytes: 4096,
        },
        Options {
            namespace: "a/b".into(),
            max_retained: 1,
            max_checkpoint_bytes: 4096,
        },
        Options {
            namespace: "x".repeat(65),
            max_retained: 1,
            max_checkpoint_bytes: 4096,
        },
        Options {
            namespace: "ns".into(),
            max_retained: 0,
            max_checkpoint_bytes: 4096,
        },
        Options {
            namespace: "ns".into(),
            max_retained: 1,
            max_checkpoint_bytes: 10,
        },
    ];
    for options in bad {
        let result = Checkpointer::open(
            options.clone(),
            MemoryStorage::default(),
            RecordingConsumer::default(),
        );
        assert!(matches!(result, Err(Error::Invalid(_))), "{options:?}");
    }
}

#[test]
fn a_concurrent_change_between_read_and_commit_is_a_conflict() {
    // A storage that lets another writer commit between our read and our commit.
    struct Racing(MemoryStorage);
    impl Storage for Racing {
        fn get(&mut self, key: &str) -> Result<Lookup, crate::model::StorageError> {
            let seen = self.0.get(key);
            let mut rival = at(9, 90);
            rival.epoch = 1;
            self.0.set_raw(key, crate::codec::encode(&rival).unwrap());
            seen
        }
        fn commit(
            &mut self,
            writes: &[Write],
        ) -> Result<CommitOutcome, crate::model::StorageError> {
            self.0.commit(writes)
        }
        fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, crate::model::StorageError> {
            self.0.list_keys(prefix)
        }
    }
    let options = Options {
        namespace: "ns".into(),
        max_retained: 2,
        max_checkpoint_bytes: 4096,
    };
    let mut c = Checkpointer::open(
        options,
        Racing(MemoryStorage::default()),
        RecordingConsumer::default(),
    )
    .unwrap();
    let err = c.write(&at(1, 1), &ids(&["a"])).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(c.consumer_mut().acks.is_empty());
}

#[test]
fn a_second_write_of_its_own_stage_skips_listing_and_still_prunes_exactly() {
    let mut c = open(3);
    for sequence in 1..=6 {
        c.write(&at(sequence, sequence * 10), &ids(&["m"])).unwrap();
    }
    // Only the first write listed: the later ones knew what the one before them left.
    let listings = c
        .storage_mut()
        .calls
        .iter()
        .filter(|c| **c == "list-keys")
        .count();
    assert_eq!(listings, 1);
    let history: Vec<u64> = c
        .history("run", "stage")
        .unwrap()
        .iter()
        .map(|c| c.sequence)
        .collect();
    assert_eq!(history, [4, 5, 6]);
}

#[test]
fn a_write_after_another_writer_moved_the_stage_lists_again() {
    let mut c = open(2);
    c.write(&at(1, 10), &ids(&["a"])).unwrap();
    // Another writer (same store) moves the stage on; its copy of sequence 2 must be pruned
    // by our next write, which only a fresh listing can know about.
    let mut other = Checkpointer::open(
        c.options().clone(),
        c.storage_mut().clone(),
        RecordingConsumer::default(),
    )
    .unwrap();
    other.write(&at(2, 20), &ids(&["b"])).unwrap();
    *c.storage_mut() = other.storage_mut().clone();
    c.storage_mut().calls.clear();

    let receipt = c.write(&at(3, 30), &ids(&["c"])).unwrap();
    assert_eq!(c.storage_mut().calls, ["get", "list-keys", "commit"]);
    assert_eq!(receipt.pruned, 1);
    let history: Vec<u64> = c
        .history("run", "stage")
        .unwrap()
        .iter()
        .map(|c| c.sequence)
        .collect();
    assert_eq!(history, [2, 3]);
}

/// A store whose first `list-keys` sees a peer's commit that landed just after the latest was
/// read: the race between `resume_point`'s two reads and a stage's first write.
struct PeerCommitsBeforeFirstList {
    current: MemoryStorage,
    after_first_list: Option<MemoryStorage>,
}

impl Storage for PeerCommitsBeforeFirstList {
    fn get(&mut self, key: &str) -> Result<crate::model::Lookup, StorageError> {
        self.current.get(key)
    }

    fn commit(
        &mut self,
        writes: &[crate::model::Write],
    ) -> Result<crate::model::CommitOutcome, StorageError> {
        self.current.commit(writes)
    }

    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        if let Some(peer_state) = self.after_first_list.take() {
            self.current = peer_state;
        }
        self.current.list_keys(prefix)
    }
}

#[test]
fn a_first_write_racing_resume_point_is_read_as_the_latest_not_as_damage() {
    let mut peer = open(3);
    peer.write(&at(1, 10), &ids(&["m"])).unwrap();
    let storage = PeerCommitsBeforeFirstList {
        current: MemoryStorage::default(),
        after_first_list: Some(peer.storage_mut().clone()),
    };
    let options = Options {
        namespace: "ns".into(),
        max_retained: 3,
        max_checkpoint_bytes: 4096,
    };
    let mut c = Checkpointer::open(options, storage, RecordingConsumer::default()).unwrap();
    let resume = c.resume_point("run", "stage").unwrap();
    assert_eq!(resume.origin, ResumeOrigin::Latest);
    assert_eq!(resume.point.sequence, 1);
    assert_eq!(resume.point.watermark.offset, 10);
}

#[test]
fn recover_acks_acks_the_batch_stored_with_the_latest() {
    let mut c = open(2);
    c.consumer_mut().fail_next = 1;
    let receipt = c.write(&at(1, 10), &ids(&["a", "b"])).unwrap();
    assert!(matches!(receipt.acks, AckOutcome::Failed(_)));
    assert_eq!(
        c.recover_acks("run", "stage").unwrap(),
        AckOutcome::Acked(2)
    );
    assert_eq!(c.consumer_mut().acks, [ids(&["a", "b"])]);
    // Nothing stored: nothing to ack, no ack call.
    assert_eq!(
        c.recover_acks("run", "other").unwrap(),
        AckOutcome::Acked(0)
    );
    assert_eq!(c.consumer_mut().acks.len(), 1);
}

#[test]
fn a_replay_with_another_batch_is_still_a_replay() {
    let mut c = open(1);
    c.write(&at(1, 10), &ids(&["a"])).unwrap();
    let receipt = c.write(&at(1, 10), &ids(&["b", "c"])).unwrap();
    assert!(receipt.replayed);
    assert_eq!(c.consumer_mut().acks, [ids(&["a"]), ids(&["b", "c"])]);
}

#[test]
fn a_batch_beyond_the_ack_recovery_bound_is_invalid_before_any_io() {
    let mut c = open(1);
    let batch: Vec<String> = (0..=MAX_ACK_IDS).map(|i| i.to_string()).collect();
    let err = c.write(&at(1, 10), &batch).unwrap_err();
    assert!(
        matches!(err, Error::Invalid(ref i) if i.field == "batch"),
        "{err:?}"
    );
    let big = vec!["x".repeat(MAX_ACK_ID_BYTES + 1)];
    assert!(matches!(c.write(&at(1, 10), &big), Err(Error::Invalid(_))));
    assert!(c.storage_mut().calls.is_empty());
}

#[test]
fn resume_gives_the_whole_checkpoint_it_comes_from_even_after_a_fallback() {
    let mut c = open(3);
    let mut first = at(1, 10);
    first.operator_states = vec![crate::model::OperatorState {
        name: "sum".into(),
        state: vec![1, 2, 3],
    }];
    c.write(&first, &[]).unwrap();
    c.write(&at(2, 20), &[]).unwrap();
    c.storage_mut()
        .set_raw(&keys().latest(), b"damaged".to_vec());
    c.storage_mut()
        .set_raw(&keys().history(2), b"damaged".to_vec());
    let resume = c.resume_point("run", "stage").unwrap();
    assert!(matches!(resume.origin, ResumeOrigin::Fallback(_)));
    assert_eq!(resume.checkpoint, Some(first));
}

#[test]
fn history_ends_with_the_latest_even_when_its_retained_copy_is_gone() {
    let mut c = open(3);
    for sequence in 1..=3 {
        c.write(&at(sequence, sequence * 10), &[]).unwrap();
    }
    c.storage_mut().remove_raw(&keys().history(3));
    let sequences: Vec<u64> = c
        .history("run", "stage")
        .unwrap()
        .iter()
        .map(|c| c.sequence)
        .collect();
    assert_eq!(sequences, [1, 2, 3]);
}

#[test]
fn history_fails_corrupt_when_the_latest_is_damaged() {
    let mut c = open(3);
    c.write(&at(1, 10), &[]).unwrap();
    c.write(&at(2, 20), &[]).unwrap();
    c.storage_mut()
        .set_raw(&keys().latest(), b"damaged".to_vec());
    assert!(matches!(c.history("run", "stage"), Err(Error::Corrupt(_))));
}
