//! Storage keys. A (run-id, stage) pair maps to keys injectively: no two pairs share a key,
//! whatever characters the ids contain.
//!
//! Layout: `ckpt/{namespace}/{run}/{stage}/latest` holds the latest checkpoint,
//! `ckpt/{namespace}/{run}/{stage}/h/{sequence:020}` its retained copies (zero-padded, so byte
//! order is sequence order) and `ckpt/{namespace}/{run}/{stage}/s/{name}` its savepoints
//! (the name escaped like the ids; outside `h/`, so retention never lists them). `run` and `stage` are escaped: bytes of `A-Z a-z 0-9 _ -` stay,
//! every other byte becomes `%XX`. So an escaped id never contains `/` (the separator), `.`, or
//! a control character, and escaping is injective because `%` itself is escaped.
//!
//! This module is the one home of the layout: the component writes keys with [`StageKeys`],
//! and tools that read a store back (the host's `ckpt verify`) split them with [`ParsedKey`].
//!
//! ```
//! use checkpoint_guest::keys::{ParsedKey, Slot, StageKeys};
//!
//! let keys = StageKeys::new("ns", "run/1", "parse");
//! let parsed = ParsedKey::parse(&keys.history(7)).expect("a key of the layout");
//! assert_eq!((parsed.run_id(), parsed.stage(), parsed.slot()), ("run/1", "parse", Slot::History(7)));
//! assert_eq!(parsed.stage_keys(), &keys);
//! ```

use core::cmp::Ordering;
use core::fmt::Write as _;

/// Every key the component writes starts with this.
pub const ROOT: &str = "ckpt/";

/// Digits of a retained copy's sequence in its key.
const SEQUENCE_DIGITS: usize = 20;

/// Appends the escaped form of `id` to `out`.
pub fn escape_into(id: &str, out: &mut String) {
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(byte as char);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// The escaped form of `id`.
pub fn escape(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    escape_into(id, &mut out);
    out
}

/// Undoes [`escape`]: `unescape(&escape(id)) == id` for every `id`.
///
/// Input that `escape` cannot produce (a key some other writer made) is read, never refused:
/// `%` followed by two hex digits of either case is that byte, any other byte (a lone `%`
/// included) stands for itself, and bytes that do not form UTF-8 become U+FFFD. On such input
/// the result is only a best-effort reading, for people: `a.b`, `a%2Eb` and `a%2eb` all read
/// `a.b`, so compare keys (or [`StageKeys`]), not unescaped ids, to decide where a value
/// belongs.
pub fn unescape(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i..] {
            [b'%', high, low, ..] => hex_digit(high).zip(hex_digit(low)),
            _ => None,
        };
        match decoded {
            Some((high, low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    }
}

fn hex_digit(byte: u8) -> Option<u8> {
    // A hex digit is below 16, so the cast is exact.
    char::from(byte).to_digit(16).map(|digit| digit as u8)
}

/// The sequence that the last segment of a retained copy's key names: exactly 20 digits.
fn parse_sequence(digits: &str) -> Option<u64> {
    if digits.len() != SEQUENCE_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // 20 digits can still exceed u64::MAX; such a key is not one of ours either.
    digits.parse().ok()
}

/// The keys of one (namespace, run-id, stage).
///
/// Ordered by namespace, then escaped run, then escaped stage, segment by segment: not by the
/// bytes of the common prefix, which would put stage `s-2` before `s` (`-` sorts before `/`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StageKeys {
    /// `ckpt/{namespace}/{run}/{stage}/`
    prefix: String,
}

impl StageKeys {
    /// Keys for `run_id` and `stage` under `namespace` (which the options already restrict to
    /// characters that need no escaping).
    pub fn new(namespace: &str, run_id: &str, stage: &str) -> Self {
        let mut prefix =
            String::with_capacity(ROOT.len() + namespace.len() + run_id.len() + stage.len() + 3);
        prefix.push_str(ROOT);
        prefix.push_str(namespace);
        prefix.push('/');
        escape_into(run_id, &mut prefix);
        prefix.push('/');
        escape_into(stage, &mut prefix);
        prefix.push('/');
        Self { prefix }
    }

    /// `ckpt/{namespace}/{run}/{stage}/`: the prefix of every key of the stage.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of the latest checkpoint.
    pub fn latest(&self) -> String {
        format!("{}latest", self.prefix)
    }

    /// The prefix of every retained copy.
    pub fn history_prefix(&self) -> String {
        format!("{}h/", self.prefix)
    }

    /// The key of the retained copy of `sequence`.
    pub fn history(&self, sequence: u64) -> String {
        format!("{}h/{sequence:020}", self.prefix)
    }

    /// The sequence of a retained copy's key, or `None` when `key` is not one of ours.
    pub fn history_sequence(&self, key: &str) -> Option<u64> {
        parse_sequence(key.strip_prefix(&self.prefix)?.strip_prefix("h/")?)
    }

    /// The prefix of every savepoint.
    pub fn savepoint_prefix(&self) -> String {
        format!("{}s/", self.prefix)
    }

    /// The key of the savepoint `name`.
    pub fn savepoint(&self, name: &str) -> String {
        let mut key = self.savepoint_prefix();
        escape_into(name, &mut key);
        key
    }

    /// The escaped name of a savepoint's key, or `None` when `key` is not one of ours.
    pub fn savepoint_name<'k>(&self, key: &'k str) -> Option<&'k str> {
        let name = key.strip_prefix(&self.prefix)?.strip_prefix("s/")?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }
}

/// The prefix of every key of `namespace`, or of one run of it.
pub fn namespace_prefix(namespace: &str, run_id: Option<&str>) -> String {
    let mut prefix = format!("{ROOT}{namespace}/");
    if let Some(run_id) = run_id {
        escape_into(run_id, &mut prefix);
        prefix.push('/');
    }
    prefix
}

impl Ord for StageKeys {
    fn cmp(&self, other: &Self) -> Ordering {
        self.prefix.split('/').cmp(other.prefix.split('/'))
    }
}

impl PartialOrd for StageKeys {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Which copy of a stage a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// `…/latest`: the latest checkpoint.
    Latest,
    /// `…/h/{sequence:020}`: a retained copy, with the sequence its key names.
    History(u64),
    /// `…/s/{name}`: a savepoint ([`ParsedKey::savepoint_name`] has its name).
    Savepoint,
}

/// A key of the layout, read back into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedKey {
    namespace: String,
    run_id: String,
    stage: String,
    slot: Slot,
    /// A savepoint's name, unescaped; empty for other slots.
    savepoint: String,
    /// The stage the key sits under, exactly as written.
    keys: StageKeys,
}

impl ParsedKey {
    /// Splits `key`, or `None` when it does not have the layout's shape: the [`ROOT`], then
    /// non-empty namespace, run and stage segments, then `latest`, `h/` and 20 digits, or `s/`
    /// and a non-empty name.
    ///
    /// The escapes in the run and stage segments are not checked: a key with escapes that
    /// [`escape`] would not write (`a.b`, `%2e`) still parses, its ids read as [`unescape`]
    /// reads them, and its [`stage_keys`](Self::stage_keys) differ from those of every
    /// (run-id, stage) pair, so it is never taken for the home of a checkpoint.
    pub fn parse(key: &str) -> Option<Self> {
        let parts: Vec<&str> = key.strip_prefix(ROOT)?.split('/').collect();
        let mut savepoint = String::new();
        let (namespace, run, stage, slot) = match parts.as_slice() {
            [namespace, run, stage, "latest"] => (*namespace, *run, *stage, Slot::Latest),
            [namespace, run, stage, "s", name] if !name.is_empty() => {
                savepoint = unescape(name);
                (*namespace, *run, *stage, Slot::Savepoint)
            }
            [namespace, run, stage, "h", digits] => (
                *namespace,
                *run,
                *stage,
                Slot::History(parse_sequence(digits)?),
            ),
            _ => return None,
        };
        if namespace.is_empty() || run.is_empty() || stage.is_empty() {
            return None;
        }
        let prefix_len = ROOT.len() + namespace.len() + run.len() + stage.len() + 3;
        Some(Self {
            namespace: namespace.to_owned(),
            run_id: unescape(run),
            stage: unescape(stage),
            slot,
            savepoint,
            keys: StageKeys {
                prefix: key[..prefix_len].to_owned(),
            },
        })
    }

    /// The namespace (never escaped).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The run id, unescaped.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The stage, unescaped.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// Which copy the key holds.
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// The savepoint's name, unescaped, when the key holds a savepoint.
    pub fn savepoint_name(&self) -> Option<&str> {
        (self.slot == Slot::Savepoint).then_some(self.savepoint.as_str())
    }

    /// The keys of the stage this key sits under, taken from the key as written, so
    /// `stage_keys().latest()` is this stage's latest key. A checkpoint is in its place when
    /// `StageKeys::new(namespace, &checkpoint.run_id, &checkpoint.stage)` equals this (and, for
    /// a retained copy, its sequence is the one in the key).
    pub fn stage_keys(&self) -> &StageKeys {
        &self.keys
    }

    /// `namespace/run-id/stage` with the ids unescaped: a label for people, not a key.
    pub fn stage_label(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.run_id, self.stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids that break naive key schemes: separators, dots, the escape character itself,
    /// control bytes, non-ASCII, and strings that look like escapes already.
    const TRICKY_IDS: &[&str] = &[
        "",
        "plain-id_0",
        "a/b",
        "/",
        "a:b",
        "%",
        "%%",
        "%2F",
        "%zz",
        ".",
        "..",
        "../../etc",
        "\0",
        "x\0y\n\t",
        "é",
        "日本語",
        "🦀/🦀",
        "\u{FFFD}",
        " latest ",
        "h/00000000000000000001",
    ];

    #[test]
    fn separators_and_dots_are_escaped() {
        assert_eq!(escape("a/b:c..d"), "a%2Fb%3Ac%2E%2Ed");
        assert_eq!(escape("x\0y\n"), "x%00y%0A");
        assert_eq!(escape("é"), "%C3%A9");
        assert_eq!(escape("%"), "%25");
    }

    #[test]
    fn pairs_that_would_collide_with_naive_joining_get_distinct_keys() {
        let pairs = [
            ("a/b", "c"),
            ("a", "b/c"),
            ("a:b", "c"),
            ("a", "b:c"),
            ("a%2Fb", "c"),
            ("a", "b%2Fc"),
        ];
        let mut keys: Vec<String> = pairs
            .iter()
            .map(|(r, s)| StageKeys::new("ns", r, s).latest())
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), pairs.len());
    }

    #[test]
    fn history_keys_sort_by_sequence_and_parse_back() {
        let keys = StageKeys::new("ns", "run", "stage");
        assert!(keys.history(9) < keys.history(10));
        assert_eq!(
            keys.history_sequence(&keys.history(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(keys.history_sequence(&keys.latest()), None);
        assert_eq!(keys.history_sequence("ckpt/ns/run/stage/h/12"), None);
    }

    #[test]
    fn unescape_inverts_escape_on_tricky_ids() {
        for id in TRICKY_IDS {
            let escaped = escape(id);
            assert_eq!(unescape(&escaped), *id, "escaped as {escaped:?}");
        }
    }

    #[test]
    fn unescape_reads_malformed_escapes_as_documented() {
        // A `%` without two hex digits stands for itself.
        assert_eq!(unescape("%"), "%");
        assert_eq!(unescape("a%4"), "a%4");
        assert_eq!(unescape("%zz"), "%zz");
        assert_eq!(unescape("%+1"), "%+1");
        assert_eq!(unescape("%%41"), "%A");
        // Lower-case hex and unescaped bytes are read too, so different inputs can read alike.
        assert_eq!(unescape("%2e"), ".");
        assert_eq!(unescape("a.b"), "a.b");
        assert_eq!(unescape("a%2Eb"), unescape("a%2eb"));
        // Bytes that are not UTF-8 become U+FFFD.
        assert_eq!(unescape("%FF"), "\u{FFFD}");
        assert_eq!(unescape("a%C3"), "a\u{FFFD}");
    }

    #[test]
    fn parse_reads_back_latest_and_history_keys_of_tricky_ids() {
        for run_id in TRICKY_IDS.iter().filter(|id| !id.is_empty()) {
            for stage in ["s", "a/b", "..", "é:%"] {
                let keys = StageKeys::new("ns.1", run_id, stage);
                for (key, slot) in [
                    (keys.latest(), Slot::Latest),
                    (keys.history(0), Slot::History(0)),
                    (keys.history(u64::MAX), Slot::History(u64::MAX)),
                ] {
                    let parsed = ParsedKey::parse(&key).expect(&key);
                    assert_eq!(parsed.namespace(), "ns.1");
                    assert_eq!(parsed.run_id(), *run_id);
                    assert_eq!(parsed.stage(), stage);
                    assert_eq!(parsed.slot(), slot);
                    assert_eq!(parsed.stage_keys(), &keys);
                }
            }
        }
    }

    #[test]
    fn parse_rejects_keys_outside_the_layout() {
        let malformed = [
            "",
            "ckpt/",
            "ckpt",
            "CKPT/ns/r/s/latest",
            "other/ns/r/s/latest",
            "/ckpt/ns/r/s/latest",
            "ckpt/ns/r/s",
            "ckpt/ns/r/s/",
            "ckpt/ns/r/latest",
            "ckpt/ns/r/s/t/latest",
            "ckpt/ns/r/s/latest/",
            "ckpt/ns/r/s/latestx",
            "ckpt//r/s/latest",
            "ckpt/ns//s/latest",
            "ckpt/ns/r//latest",
            "ckpt/ns/r/s/h",
            "ckpt/ns/r/s/h/",
            "ckpt/ns/r/s/h/42",
            "ckpt/ns/r/s/h/000000000000000000042",
            "ckpt/ns/r/s/h/0000000000000000004x",
            "ckpt/ns/r/s/h/+0000000000000000042",
            // 20 digits, but more than u64::MAX.
            "ckpt/ns/r/s/h/99999999999999999999",
            "ckpt/ns/r/s/h/00000000000000000042/",
            "ckpt/ns/r/s/h/00000000000000000042/latest",
        ];
        for key in malformed {
            assert_eq!(ParsedKey::parse(key), None, "{key:?}");
        }
    }

    #[test]
    fn keys_with_foreign_escapes_parse_but_are_home_to_no_checkpoint() {
        for key in ["ckpt/ns/a.b/s/latest", "ckpt/ns/a%2eb/s/latest"] {
            let parsed = ParsedKey::parse(key).expect(key);
            assert_eq!(parsed.run_id(), "a.b");
            assert_eq!(parsed.stage_keys().latest(), key);
            assert_ne!(parsed.stage_keys(), &StageKeys::new("ns", "a.b", "s"));
        }
    }

    #[test]
    fn stage_label_shows_the_ids_unescaped() {
        let parsed = ParsedKey::parse("ckpt/ns/r%2F1/s%3A2/h/00000000000000000042").unwrap();
        assert_eq!(parsed.slot(), Slot::History(42));
        assert_eq!(parsed.stage_label(), "ns/r/1/s:2");
    }

    #[test]
    fn stage_keys_order_by_segment_not_by_prefix_bytes() {
        // `-` sorts before `/`, so comparing the prefixes would put these the other way round.
        assert!(StageKeys::new("ns", "r", "s") < StageKeys::new("ns", "r", "s-2"));
        assert!(StageKeys::new("ns", "r", "s-2") < StageKeys::new("ns", "r-2", "a"));
        assert!(StageKeys::new("a", "r", "s") < StageKeys::new("a-b", "r", "s"));
        let keys = StageKeys::new("ns", "r", "s");
        assert_eq!(keys.cmp(&keys.clone()), Ordering::Equal);
    }
}
