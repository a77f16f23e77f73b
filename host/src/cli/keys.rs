//! The component's storage key layout, read back: `ckpt/{namespace}/{run}/{stage}/latest` and
//! `ckpt/{namespace}/{run}/{stage}/h/{sequence:020}`, run and stage escaped (bytes of
//! `A-Z a-z 0-9 _ -` kept, every other byte `%XX`). The guest writes these keys; `verify` and
//! the demo only need to find them, and to check that a value sits under its own ids.

use std::fmt::Write as _;

/// Every key the component writes starts with this.
pub const ROOT: &str = "ckpt/";

/// Escapes one id the way the component does.
pub fn escape(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Undoes `escape` for display; malformed escapes are kept as they are.
pub fn unescape(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The key of the latest checkpoint of (run, stage).
pub fn latest(namespace: &str, run_id: &str, stage: &str) -> String {
    format!(
        "{ROOT}{namespace}/{}/{}/latest",
        escape(run_id),
        escape(stage)
    )
}

/// Which copy a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Latest,
    /// A retained copy, with the sequence its key names.
    History(u64),
}

/// A key of the layout, split into its parts (run and stage still escaped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageKey {
    pub namespace: String,
    pub run: String,
    pub stage: String,
    pub slot: Slot,
}

impl StageKey {
    /// Splits `key`, or `None` when it is not a key of the layout.
    pub fn parse(key: &str) -> Option<Self> {
        let parts: Vec<&str> = key.strip_prefix(ROOT)?.split('/').collect();
        let slot = match parts.as_slice() {
            [_, _, _, "latest"] => Slot::Latest,
            [_, _, _, "h", digits]
                if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Slot::History(digits.parse().ok()?)
            }
            _ => return None,
        };
        if parts[..3].iter().any(|part| part.is_empty()) {
            return None;
        }
        Some(Self {
            namespace: parts[0].to_owned(),
            run: parts[1].to_owned(),
            stage: parts[2].to_owned(),
            slot,
        })
    }

    /// `namespace/run/stage` with the ids unescaped, for people.
    pub fn stage_label(&self) -> String {
        format!(
            "{}/{}/{}",
            self.namespace,
            unescape(&self.run),
            unescape(&self.stage)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_separators_out_of_components() {
        assert_eq!(escape("a/b c%é"), "a%2Fb%20c%25%C3%A9");
        assert_eq!(unescape(&escape("a/b c%é")), "a/b c%é");
    }

    #[test]
    fn parse_reads_latest_and_history_keys() {
        let key = StageKey::parse("ckpt/ns/r%2F1/s/h/00000000000000000042").expect("history key");
        assert_eq!(key.slot, Slot::History(42));
        assert_eq!(key.stage_label(), "ns/r/1/s");
        assert_eq!(
            StageKey::parse(&latest("ns", "r", "s")).map(|k| k.slot),
            Some(Slot::Latest)
        );
        assert_eq!(StageKey::parse("ckpt/ns/r/s/h/42"), None);
        assert_eq!(StageKey::parse("ckpt/ns/r/latest"), None);
    }
}
