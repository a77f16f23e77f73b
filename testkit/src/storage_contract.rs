//! The `Storage` contract as executable checks: every backend (and any store a user writes)
//! must pass all of them.
//!
//! Each check is a function over `&mut dyn Storage` that panics on a breach;
//! [`CHECKS`] lists them by name, and [`storage_contract_tests!`](crate::storage_contract_tests)
//! makes one `#[test]` per check for a backend, each on a fresh store:
//!
//! ```
//! use checkpoint_host::storage::{MemoryStorage, Storage};
//!
//! fn fresh() -> Option<(Box<dyn Storage>, ())> {
//!     Some((Box::new(MemoryStorage::new()), ()))
//! }
//! for (name, check) in checkpoint_testkit::storage_contract::CHECKS {
//!     let (mut store, _guard) = fresh().expect("a store");
//!     check(&mut *store);
//!     println!("{name}: ok");
//! }
//! ```

use checkpoint_host::storage::Storage;
use checkpoint_host::{CommitOutcome, Entry, Lookup, StorageError, Write, WriteOp};

/// One contract check: panics when the store breaks the rule it is named after.
pub type Check = fn(&mut dyn Storage);

/// Every check of the contract, by name, in the order they are documented.
pub const CHECKS: &[(&str, Check)] = &[
    ("absent_key_reads_as_missing", absent_key_reads_as_missing),
    (
        "put_is_read_back_with_a_positive_version",
        put_is_read_back_with_a_positive_version,
    ),
    (
        "values_round_trip_byte_for_byte",
        values_round_trip_byte_for_byte,
    ),
    (
        "expected_zero_requires_the_key_to_be_absent",
        expected_zero_requires_the_key_to_be_absent,
    ),
    (
        "expected_version_must_match_the_current_one",
        expected_version_must_match_the_current_one,
    ),
    (
        "conflict_names_the_first_failing_write_and_applies_nothing",
        conflict_names_the_first_failing_write_and_applies_nothing,
    ),
    (
        "unconditional_writes_ignore_the_current_version",
        unconditional_writes_ignore_the_current_version,
    ),
    (
        "every_write_changes_the_version",
        every_write_changes_the_version,
    ),
    (
        "one_batch_gets_distinct_versions_in_order",
        one_batch_gets_distinct_versions_in_order,
    ),
    (
        "conditional_delete_checks_the_version",
        conditional_delete_checks_the_version,
    ),
    (
        "version_is_never_reused_after_delete",
        version_is_never_reused_after_delete,
    ),
    ("empty_batch_commits_nothing", empty_batch_commits_nothing),
    (
        "batch_repeating_a_key_is_refused_and_applies_nothing",
        batch_repeating_a_key_is_refused_and_applies_nothing,
    ),
    (
        "list_keys_is_in_ascending_byte_order",
        list_keys_is_in_ascending_byte_order,
    ),
    (
        "list_keys_matches_the_prefix_exactly",
        list_keys_matches_the_prefix_exactly,
    ),
    ("keys_are_data_not_paths", keys_are_data_not_paths),
];

/// A conditional put of `value` at `key` (`expected`: `None` unconditional, `Some(0)` absent).
pub fn put(key: &str, expected: Option<u64>, value: &[u8]) -> Write {
    Write {
        key: key.to_owned(),
        expected_version: expected,
        op: WriteOp::Put(value.to_vec()),
    }
}

/// A conditional delete of `key`.
pub fn del(key: &str, expected: Option<u64>) -> Write {
    Write {
        key: key.to_owned(),
        expected_version: expected,
        op: WriteOp::Delete,
    }
}

/// Commits `writes`, which must succeed, and returns their new versions.
pub fn committed(s: &mut dyn Storage, writes: Vec<Write>) -> Vec<u64> {
    match s.commit(writes).expect("commit succeeds") {
        CommitOutcome::Committed(versions) => versions,
        CommitOutcome::Conflict(i) => panic!("unexpected conflict at {i}"),
    }
}

/// The current version of `key` (0 when absent).
pub fn version(s: &mut dyn Storage, key: &str) -> u64 {
    match s.get(key).expect("get succeeds") {
        Lookup::Found(entry) => entry.version,
        Lookup::Missing => 0,
    }
}

/// The current value of `key`, if any.
pub fn value(s: &mut dyn Storage, key: &str) -> Option<Vec<u8>> {
    match s.get(key).expect("get succeeds") {
        Lookup::Found(entry) => Some(entry.value),
        Lookup::Missing => None,
    }
}

/// Contract check: absent key reads as missing.
pub fn absent_key_reads_as_missing(s: &mut dyn Storage) {
    assert_eq!(
        s.get("nothing-here").expect("get succeeds"),
        Lookup::Missing
    );
}

/// Contract check: put is read back with a positive version.
pub fn put_is_read_back_with_a_positive_version(s: &mut dyn Storage) {
    let versions = committed(s, vec![put("k", None, b"hello"), put("empty", None, b"")]);
    assert_eq!(versions.len(), 2);
    assert!(
        versions.iter().all(|v| *v >= 1),
        "versions are positive: {versions:?}"
    );
    assert_eq!(
        s.get("k").expect("get succeeds"),
        Lookup::Found(Entry {
            value: b"hello".to_vec(),
            version: versions[0]
        })
    );
    assert_eq!(
        s.get("empty").expect("get succeeds"),
        Lookup::Found(Entry {
            value: Vec::new(),
            version: versions[1]
        })
    );
}

/// Contract check: values round trip byte for byte.
pub fn values_round_trip_byte_for_byte(s: &mut dyn Storage) {
    let binary: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    committed(
        s,
        vec![put("bin", None, &binary), put("nul", None, b"\0\0a\0")],
    );
    assert_eq!(value(s, "bin").as_deref(), Some(binary.as_slice()));
    assert_eq!(value(s, "nul").as_deref(), Some(b"\0\0a\0".as_slice()));
}

/// Contract check: expected zero requires the key to be absent.
pub fn expected_zero_requires_the_key_to_be_absent(s: &mut dyn Storage) {
    let v = committed(s, vec![put("k", Some(0), b"first")])[0];
    assert_eq!(
        s.commit(vec![put("k", Some(0), b"second")])
            .expect("commit"),
        CommitOutcome::Conflict(0)
    );
    assert_eq!(value(s, "k").as_deref(), Some(b"first".as_slice()));
    assert_eq!(version(s, "k"), v);
}

/// Contract check: expected version must match the current one.
pub fn expected_version_must_match_the_current_one(s: &mut dyn Storage) {
    let v1 = committed(s, vec![put("k", None, b"one")])[0];
    let v2 = committed(s, vec![put("k", Some(v1), b"two")])[0];
    assert_ne!(v1, v2);
    assert_eq!(
        s.commit(vec![put("k", Some(v1), b"stale")])
            .expect("commit"),
        CommitOutcome::Conflict(0)
    );
    assert_eq!(value(s, "k").as_deref(), Some(b"two".as_slice()));
    // A condition on an absent key with a non-zero version fails too.
    assert_eq!(
        s.commit(vec![put("absent", Some(v2), b"x")])
            .expect("commit"),
        CommitOutcome::Conflict(0)
    );
    assert_eq!(s.get("absent").expect("get"), Lookup::Missing);
}

/// Contract check: conflict names the first failing write and applies nothing.
pub fn conflict_names_the_first_failing_write_and_applies_nothing(s: &mut dyn Storage) {
    let va = committed(s, vec![put("a", None, b"a1")])[0];
    let vb = committed(s, vec![put("b", None, b"b1")])[0];
    let outcome = s
        .commit(vec![
            put("a", Some(va), b"a2"),
            put("new", Some(0), b"n"),
            put("b", Some(vb + 1000), b"b2"), // the first that fails
            del("c", Some(12345)),            // fails too, but later
        ])
        .expect("commit");
    assert_eq!(outcome, CommitOutcome::Conflict(2));
    assert_eq!(value(s, "a").as_deref(), Some(b"a1".as_slice()));
    assert_eq!(version(s, "a"), va);
    assert_eq!(s.get("new").expect("get"), Lookup::Missing);
    assert_eq!(value(s, "b").as_deref(), Some(b"b1".as_slice()));
}

/// Contract check: unconditional writes ignore the current version.
pub fn unconditional_writes_ignore_the_current_version(s: &mut dyn Storage) {
    committed(s, vec![put("k", None, b"one")]);
    committed(s, vec![put("k", None, b"two")]);
    assert_eq!(value(s, "k").as_deref(), Some(b"two".as_slice()));
    assert_eq!(
        committed(s, vec![del("k", None), del("never-was", None)]),
        vec![0, 0]
    );
    assert_eq!(s.get("k").expect("get"), Lookup::Missing);
}

/// Contract check: every write changes the version.
pub fn every_write_changes_the_version(s: &mut dyn Storage) {
    let mut seen = Vec::new();
    for i in 0..5u8 {
        let v = committed(s, vec![put("k", None, &[i])])[0];
        assert!(!seen.contains(&v), "version {v} reused: {seen:?}");
        assert_eq!(version(s, "k"), v);
        seen.push(v);
    }
    // Rewriting the same bytes is still a write.
    let v = committed(s, vec![put("k", None, &[4])])[0];
    assert!(!seen.contains(&v));
}

/// Contract check: one batch gets distinct versions in order.
pub fn one_batch_gets_distinct_versions_in_order(s: &mut dyn Storage) {
    let versions = committed(
        s,
        vec![
            put("x", None, b"1"),
            del("y", None),
            put("z", Some(0), b"3"),
        ],
    );
    assert_eq!(versions[1], 0, "a delete answers 0");
    assert!(versions[0] >= 1 && versions[2] >= 1 && versions[0] != versions[2]);
    assert_eq!(version(s, "x"), versions[0]);
    assert_eq!(version(s, "z"), versions[2]);
}

/// Contract check: conditional delete checks the version.
pub fn conditional_delete_checks_the_version(s: &mut dyn Storage) {
    let v = committed(s, vec![put("k", None, b"v")])[0];
    assert_eq!(
        s.commit(vec![del("k", Some(v + 1))]).expect("commit"),
        CommitOutcome::Conflict(0)
    );
    assert_eq!(version(s, "k"), v);
    assert_eq!(committed(s, vec![del("k", Some(v))]), vec![0]);
    assert_eq!(s.get("k").expect("get"), Lookup::Missing);
    // Deleting an absent key that is expected absent is fine.
    assert_eq!(committed(s, vec![del("k", Some(0))]), vec![0]);
}

/// Contract check: version is never reused after delete.
pub fn version_is_never_reused_after_delete(s: &mut dyn Storage) {
    let v1 = committed(s, vec![put("k", Some(0), b"one")])[0];
    committed(s, vec![del("k", Some(v1))]);
    let v2 = committed(s, vec![put("k", Some(0), b"two")])[0];
    assert_ne!(v1, v2, "a deleted key's version came back");
    // A writer that still holds v1 must not be able to overwrite the new value.
    assert_eq!(
        s.commit(vec![put("k", Some(v1), b"stale")])
            .expect("commit"),
        CommitOutcome::Conflict(0)
    );
    assert_eq!(value(s, "k").as_deref(), Some(b"two".as_slice()));
}

/// Contract check: empty batch commits nothing.
pub fn empty_batch_commits_nothing(s: &mut dyn Storage) {
    assert_eq!(
        s.commit(Vec::new()).expect("commit"),
        CommitOutcome::Committed(Vec::new())
    );
    assert!(s.list_keys("").expect("list").is_empty());
}

/// Contract check: batch repeating a key is refused and applies nothing.
pub fn batch_repeating_a_key_is_refused_and_applies_nothing(s: &mut dyn Storage) {
    let result = s.commit(vec![
        put("other", None, b"o"),
        put("k", None, b"1"),
        put("k", None, b"2"),
    ]);
    assert!(
        matches!(result, Err(StorageError::Failed(_))),
        "got {result:?}"
    );
    assert!(s.list_keys("").expect("list").is_empty());
}

/// Keys chosen so that byte order differs from "natural" orders (case, length, code points
/// beyond the BMP, NUL, LIKE wildcards).
const AWKWARD_KEYS: &[&str] = &[
    "",
    "a",
    "a\0",
    "a\0b",
    "a%",
    "a%b",
    "a_",
    "a_b",
    "ab",
    "abc",
    "a/b",
    "a/../b",
    "A",
    "Z",
    "z",
    "é",
    "e\u{301}",
    "日本",
    "日本語",
    "\u{1F600}",
    "\u{FFFF}",
    "\u{10FFFF}",
    "~",
    "\u{7F}",
];

/// Contract check: list keys is in ascending byte order.
pub fn list_keys_is_in_ascending_byte_order(s: &mut dyn Storage) {
    let writes = AWKWARD_KEYS
        .iter()
        .map(|k| put(k, Some(0), k.as_bytes()))
        .collect();
    committed(s, writes);
    let mut expected: Vec<String> = AWKWARD_KEYS.iter().map(|k| k.to_string()).collect();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(s.list_keys("").expect("list"), expected);
    for key in AWKWARD_KEYS {
        assert_eq!(
            value(s, key).as_deref(),
            Some(key.as_bytes()),
            "key {key:?}"
        );
    }
}

/// Contract check: list keys matches the prefix exactly.
pub fn list_keys_matches_the_prefix_exactly(s: &mut dyn Storage) {
    let writes = AWKWARD_KEYS.iter().map(|k| put(k, None, b"v")).collect();
    committed(s, writes);
    for prefix in [
        "a",
        "a%",
        "a_",
        "a\0",
        "a/",
        "ab",
        "é",
        "e",
        "日本",
        "\u{1F600}",
        "\u{10FFFF}",
        "\u{7F}",
        "%",
        "_",
        "zz",
        "A",
    ] {
        let mut expected: Vec<String> = AWKWARD_KEYS
            .iter()
            .filter(|k| k.as_bytes().starts_with(prefix.as_bytes()))
            .map(|k| k.to_string())
            .collect();
        expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        assert_eq!(
            s.list_keys(prefix).expect("list"),
            expected,
            "prefix {prefix:?}"
        );
    }
}

/// Contract check: keys are data not paths.
pub fn keys_are_data_not_paths(s: &mut dyn Storage) {
    let keys = [
        "../../etc/passwd",
        "/abs/path",
        "C:\\win",
        "ns/run/../stage",
        ".",
    ];
    committed(s, keys.iter().map(|k| put(k, None, k.as_bytes())).collect());
    for key in keys {
        assert_eq!(value(s, key).as_deref(), Some(key.as_bytes()));
    }
    assert_eq!(
        s.list_keys("../").expect("list"),
        vec!["../../etc/passwd".to_owned()]
    );
}

/// One `#[test]` per contract check for a backend: `storage_contract_tests!(module, make)`
/// where `make` is an expression giving `Option<(Box<dyn Storage>, Guard)>` (a fresh, empty store
/// and whatever must live as long as it, such as a temporary directory; `None` skips, for a
/// server backend when `CKPT_SKIP_SERVER_TESTS=1` said so loudly).
#[macro_export]
macro_rules! storage_contract_tests {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $crate::storage_contract_tests!(@each $make;
                absent_key_reads_as_missing,
                put_is_read_back_with_a_positive_version,
                values_round_trip_byte_for_byte,
                expected_zero_requires_the_key_to_be_absent,
                expected_version_must_match_the_current_one,
                conflict_names_the_first_failing_write_and_applies_nothing,
                unconditional_writes_ignore_the_current_version,
                every_write_changes_the_version,
                one_batch_gets_distinct_versions_in_order,
                conditional_delete_checks_the_version,
                version_is_never_reused_after_delete,
                empty_batch_commits_nothing,
                batch_repeating_a_key_is_refused_and_applies_nothing,
                list_keys_is_in_ascending_byte_order,
                list_keys_matches_the_prefix_exactly,
                keys_are_data_not_paths,
            );
        }
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let Some((mut storage, _guard)) = $make else {
                    return;
                };
                $crate::storage_contract::$check(&mut *storage);
            }
        )*
    };
}
