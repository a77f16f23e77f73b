//! Stable one-line labels for people: the same words in every host and tool, because every
//! host calls these (`codec.*-label`). FORMAT.md "Labels" documents the format and the
//! conformance case file `operator-tools.json` pins it.

use crate::codec::encoded_len;
use crate::model::{Checkpoint, ResumePoint, Watermark};
use core::fmt::Write as _;

/// Milliseconds of one day.
const DAY_MS: i64 = 86_400_000;
/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z, in milliseconds since 1970.
const FIRST_LABELLED_MS: i64 = -62_167_219_200_000;
const LAST_LABELLED_MS: i64 = 253_402_300_799_999;

/// `offset 42, event time 2024-12-03T15:16:23.000Z` (milliseconds outside years 0 to 9999).
pub fn watermark_label(w: &Watermark) -> String {
    format!(
        "offset {}, event time {}",
        w.offset,
        event_time(w.event_time_ms)
    )
}

/// `run "r" stage "s" #7 epoch 3 at offset 42, event time …Z (2 sources, 1 sink, 0 operator
/// states; 312 bytes)`.
pub fn checkpoint_label(c: &Checkpoint) -> String {
    format!(
        "{} #{} epoch {} at {} ({}, {}, {}; {} bytes)",
        stage_label(&c.run_id, &c.stage),
        c.sequence,
        c.epoch,
        watermark_label(&c.watermark),
        counted(c.sources.len(), "source", "sources"),
        counted(c.sinks.len(), "sink", "sinks"),
        counted(c.operator_states.len(), "operator state", "operator states"),
        encoded_len(c)
    )
}

/// `run "r" stage "s" resumes at offset 42, event time …Z (checkpoint #7, epoch 3)`, or
/// `run "r" stage "s" starts fresh at offset 0 (nothing stored)`.
pub fn resume_point_label(p: &ResumePoint) -> String {
    let stage = stage_label(&p.run_id, &p.stage);
    if p.sequence == 0 {
        format!(
            "{stage} starts fresh at offset {} (nothing stored)",
            p.watermark.offset
        )
    } else {
        format!(
            "{stage} resumes at {} (checkpoint #{}, epoch {})",
            watermark_label(&p.watermark),
            p.sequence,
            p.epoch
        )
    }
}

fn stage_label(run_id: &str, stage: &str) -> String {
    format!("run {} stage {}", quoted(run_id), quoted(stage))
}

fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A JSON string literal of `text`: quotes, backslashes and control characters escaped, so
/// any id stays on one line and reads back unambiguously.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// RFC 3339 in UTC with milliseconds, or `N ms` outside years 0 to 9999.
fn event_time(ms: i64) -> String {
    if !(FIRST_LABELLED_MS..=LAST_LABELLED_MS).contains(&ms) {
        return format!("{ms} ms");
    }
    let (days, in_day) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(offset: u64, event_time_ms: i64) -> Watermark {
        Watermark {
            offset,
            event_time_ms,
        }
    }

    #[test]
    fn event_times_read_as_utc_dates_inside_years_0_to_9999() {
        assert_eq!(
            watermark_label(&w(42, 1_733_238_983_000)),
            "offset 42, event time 2024-12-03T15:16:23.000Z"
        );
        assert_eq!(event_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(event_time(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(event_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(event_time(FIRST_LABELLED_MS), "0000-01-01T00:00:00.000Z");
        assert_eq!(event_time(LAST_LABELLED_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(event_time(LAST_LABELLED_MS + 1), "253402300800000 ms");
        assert_eq!(event_time(i64::MIN), "-9223372036854775808 ms");
    }

    #[test]
    fn ids_stay_on_one_line() {
        assert_eq!(quoted("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn resume_point_labels_say_fresh_or_from_which_checkpoint() {
        let mut p = ResumePoint {
            run_id: "r".into(),
            stage: "s".into(),
            sequence: 0,
            epoch: 0,
            watermark: w(0, 0),
        };
        assert_eq!(
            resume_point_label(&p),
            "run \"r\" stage \"s\" starts fresh at offset 0 (nothing stored)"
        );
        (p.sequence, p.epoch, p.watermark) = (7, 3, w(42, 0));
        assert_eq!(
            resume_point_label(&p),
            "run \"r\" stage \"s\" resumes at offset 42, event time 1970-01-01T00:00:00.000Z \
             (checkpoint #7, epoch 3)"
        );
    }
}
