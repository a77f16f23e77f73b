//! What the Rust runner (`host/tests/conformance.rs`) needs besides op calls: an expanded step's
//! faults put into the scripts of [`crate::faults`], the call counts it records, the damage of a
//! `corrupt` step, and the transcript files.

use std::path::Path;

use serde_json::{Value, json};
use sha2::Digest as _;

use super::wit::{self, Res, dec, int};
use crate::faults::{AckScript, FaultScript, StorageCall, StorageFault};

/// Restarts the counts of both scripts and injects the step's `storage` and `consumer` faults.
pub fn inject(step: &Value, storage: &FaultScript, acks: &AckScript) -> Res<()> {
    storage.reset();
    acks.reset();
    for f in step["storage"].as_array().into_iter().flatten() {
        let call = match f["call"].as_str() {
            Some("get") => StorageCall::Get,
            Some("commit") => StorageCall::Commit,
            Some("list-keys") => StorageCall::ListKeys,
            other => return Err(format!("unknown storage call {other:?}")),
        };
        let fault = match f["fault"].as_str() {
            Some("unavailable") => StorageFault::Unavailable,
            Some("timeout") => StorageFault::Timeout,
            Some("failed") => StorageFault::Failed,
            Some("conflict") => StorageFault::Conflict(int(&f["index"], "u32")?),
            Some("time-out-after-apply") => StorageFault::TimeoutAfterApply,
            Some("break-contract") => StorageFault::BreakContract,
            other => return Err(format!("unknown storage fault {other:?}")),
        };
        storage.inject(call, int(&f["nth"], "u32")?, fault);
    }
    for f in step["consumer"].as_array().into_iter().flatten() {
        acks.fail_nth(int(&f["nth"], "u32")?);
    }
    Ok(())
}

/// The step's `calls` record: calls since [`inject`].
pub fn calls(storage: &FaultScript, acks: &AckScript) -> Value {
    json!({
        "get": dec(storage.calls(StorageCall::Get)),
        "commit": dec(storage.calls(StorageCall::Commit)),
        "list-keys": dec(storage.calls(StorageCall::ListKeys)),
        "ack": dec(acks.calls()),
    })
}

/// A `corrupt` step's damage to the stored `bytes`: `flip-bit` (bit n%8, least significant
/// first, of byte n/8), `replace` (overwrite in place) or `truncate` (keep the first n bytes).
pub fn damage(mut bytes: Vec<u8>, step: &Value) -> Res<Vec<u8>> {
    if let Some(bit) = step.get("flip-bit") {
        let bit: usize = int(bit, "bit index")?;
        *bytes.get_mut(bit / 8).ok_or("flip-bit past the end")? ^= 1 << (bit % 8);
    } else if let Some(r) = step.get("replace") {
        let at: usize = int(&r["offset"], "offset")?;
        let with = wit::unhex(r["hex"].as_str().unwrap_or(""))?;
        let end = at.checked_add(with.len()).ok_or("replace past the end")?;
        bytes
            .get_mut(at..end)
            .ok_or("replace past the end")?
            .copy_from_slice(&with);
    } else if let Some(len) = step.get("truncate") {
        bytes.truncate(int(len, "length")?);
    } else {
        return Err("corrupt needs `flip-bit`, `replace` or `truncate`".into());
    }
    Ok(bytes)
}

/// Writes `dir/<host>/<backend>/<case>.json`.
pub fn write_transcript(
    dir: &Path,
    host: &str,
    backend: &str,
    case: &str,
    steps: Vec<Value>,
) -> std::io::Result<()> {
    let at = dir.join(host).join(backend);
    std::fs::create_dir_all(&at)?;
    let transcript = json!({"case": case, "host": host, "backend": backend, "steps": steps});
    let text = serde_json::to_string_pretty(&transcript).map_err(std::io::Error::other)?;
    std::fs::write(at.join(format!("{case}.json")), text + "\n")
}

/// A host call's result: `{"ok": to_json(value)}`, `{"error": error}` (the WIT JSON of the
/// component's error, with its message texts), or `{"trap": message}` for a runtime failure.
pub fn outcome<T>(r: Result<T, checkpoint_host::Error>, to_json: impl Fn(&T) -> Value) -> Value {
    match r {
        Ok(v) => {
            let mut value = to_json(&v);
            abbreviate_large_bytes(&mut value);
            json!({"ok": value})
        }
        Err(checkpoint_host::Error::Checkpoint(e)) => json!({
            "error": wit::error_json(&wit::convert(&e)),
            "message": checkpoint_host::Error::Checkpoint(e).to_string(),
        }),
        Err(checkpoint_host::Error::Runtime(e)) => json!({"trap": format!("{e:#}")}),
    }
}

/// Bytes longer than [`LARGE_BYTES`] are recorded as `{"sha256", "length"}` (README,
/// "Transcripts"): in a result, the only hex strings that long are bytes.
pub fn abbreviate_large_bytes(value: &mut Value) {
    match value {
        Value::String(s)
            if s.len() > 2 * LARGE_BYTES && s.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            let bytes = wit::unhex(s).unwrap_or_default();
            let digest: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            *value = json!({"sha256": digest, "length": bytes.len().to_string()});
        }
        Value::Array(items) => items.iter_mut().for_each(abbreviate_large_bytes),
        Value::Object(fields) => fields.values_mut().for_each(abbreviate_large_bytes),
        _ => {}
    }
}

/// Bytes up to this length are recorded as hex; longer ones by their digest.
pub const LARGE_BYTES: usize = 65_536;

/// A host value rendered by the `wit` function of the guest's type of the same WIT record.
pub fn via<H: serde::Serialize, G: serde::de::DeserializeOwned>(
    to_json: fn(&G) -> Value,
) -> impl Fn(&H) -> Value {
    move |h| to_json(&wit::convert(h))
}

fn repository(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The repository's case files, expanded (`tests/conformance/cases`, vectors from
/// `tests/golden`); the problems found, if any.
pub fn expand_repository() -> Result<Value, Vec<String>> {
    super::expand_dir(
        &repository("tests/conformance/cases"),
        &repository("tests/golden"),
    )
}

/// Where transcripts go: `$CKPT_CONFORMANCE_DIR/transcripts`, by default
/// `target/conformance/transcripts` in the repository.
pub fn transcripts_dir() -> std::path::PathBuf {
    std::env::var_os("CKPT_CONFORMANCE_DIR")
        .map_or_else(|| repository("target/conformance"), Into::into)
        .join("transcripts")
}

/// Checks one host's transcripts, requiring every case on each of `backends`.
pub fn check_host(expanded: &Value, dir: &Path, host: &str, backends: &[&str]) -> super::Report {
    let options = super::CheckOptions {
        require: backends
            .iter()
            .map(|b| (host.to_owned(), (*b).to_owned()))
            .collect(),
        hosts: Some(vec![host.to_owned()]),
    };
    super::check(expanded, dir, &options).expect("an expanded document")
}

/// The fields a step asks to record (`result`, `calls`, `acks`, `failed-acks`, `keys`).
pub fn record(step: &Value) -> impl Iterator<Item = &str> {
    step["record"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}
