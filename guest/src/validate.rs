//! The rules a checkpoint must follow before it is encoded or written. No I/O.

use crate::errors::invalid;
use crate::model::{Checkpoint, Error};

/// Longest run id, stage, name or idempotency key, in bytes. Bounds the storage keys.
pub const MAX_ID_BYTES: usize = 256;

/// Checks a run id or stage: non-empty and at most [`MAX_ID_BYTES`]. Any characters are fine:
/// keys escape them.
pub fn check_id(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(invalid(
            field,
            format!("{} bytes, at most {MAX_ID_BYTES}", value.len()),
        ));
    }
    Ok(())
}

/// Checks every rule of a checkpoint; the error names the first broken one.
pub fn validate(checkpoint: &Checkpoint) -> Result<(), Error> {
    check_id("run-id", &checkpoint.run_id)?;
    check_id("stage", &checkpoint.stage)?;
    if checkpoint.sequence == 0 {
        return Err(invalid(
            "sequence",
            "must be at least 1 (0 means \"nothing stored\")",
        ));
    }
    if checkpoint.idempotency_key.len() > MAX_ID_BYTES {
        return Err(invalid(
            "idempotency-key",
            format!(
                "{} bytes, at most {MAX_ID_BYTES}",
                checkpoint.idempotency_key.len()
            ),
        ));
    }
    check_names(
        "sources",
        checkpoint.sources.iter().map(|s| s.name.as_str()),
    )?;
    check_names("sinks", checkpoint.sinks.iter().map(|s| s.name.as_str()))?;
    check_names(
        "operator-states",
        checkpoint.operator_states.iter().map(|s| s.name.as_str()),
    )?;
    Ok(())
}

/// Names of one list: non-empty, bounded, unique (the codec sorts by them).
fn check_names<'a>(list: &str, names: impl Iterator<Item = &'a str>) -> Result<(), Error> {
    let mut seen: Vec<&str> = Vec::new();
    for (index, name) in names.enumerate() {
        let field = || format!("{list}[{index}].name");
        if name.is_empty() {
            return Err(invalid(field(), "must not be empty"));
        }
        if name.len() > MAX_ID_BYTES {
            return Err(invalid(
                field(),
                format!("{} bytes, at most {MAX_ID_BYTES}", name.len()),
            ));
        }
        seen.push(name);
    }
    seen.sort_unstable();
    if let Some(pair) = seen.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(invalid(
            list,
            format!("name {:?} appears more than once", pair[0]),
        ));
    }
    Ok(())
}
