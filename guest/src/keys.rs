//! Storage keys. A (run-id, stage) pair maps to keys injectively: no two pairs share a key,
//! whatever characters the ids contain.
//!
//! Layout: `ckpt/{namespace}/{run}/{stage}/latest` holds the latest checkpoint and
//! `ckpt/{namespace}/{run}/{stage}/h/{sequence:020}` its retained copies (zero-padded, so byte
//! order is sequence order). `run` and `stage` are escaped: bytes of `A-Z a-z 0-9 _ -` stay,
//! every other byte becomes `%XX`. So an escaped id never contains `/` (the separator), `.`, or
//! a control character, and escaping is injective because `%` itself is escaped.

use core::fmt::Write as _;

/// Every key the component writes starts with this.
pub const ROOT: &str = "ckpt/";

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

/// The keys of one (namespace, run-id, stage).
#[derive(Clone, Debug, PartialEq, Eq)]
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
        let digits = key.strip_prefix(&self.prefix)?.strip_prefix("h/")?;
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
