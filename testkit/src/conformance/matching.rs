//! The README's "Matching" rules: an expectation is a pattern over a recorded value.

use serde_json::Value;

use super::wit::int;

/// Where and how a recorded value failed its pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// JSON path of the field inside the step's record (`result.ok.acks`, `keys[2]`).
    pub path: String,
    /// The pattern (or, comparing hosts, the reference host's value) at that path.
    pub expected: String,
    /// The recorded value at that path.
    pub actual: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at {}: expected {}, got {}",
            self.path, self.expected, self.actual
        )
    }
}

fn numeric(v: &Value) -> Option<i128> {
    match v {
        Value::Number(_) | Value::String(_) => int::<i128>(v, "integer").ok(),
        _ => None,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 240 {
        format!("{}...", s.chars().take(240).collect::<String>())
    } else {
        s
    }
}

/// Checks `actual` against the pattern `expected` (see the README's "Matching"):
///
/// - an object matches an object that has each of its fields, each matching (extra actual
///   fields are ignored);
/// - a string matches a variant `{"case": payload}` whose case is that string;
/// - an array matches an array of the same length, element by element;
/// - a number or a decimal string matches a number or a decimal string of the same value;
///   other scalars match equal scalars;
/// - `{"$contains": "text"}` matches a string containing `text`.
///
/// `{"$vector": file}` patterns are resolved to hex by the expander before they get here.
pub fn matches(expected: &Value, actual: &Value, path: &str) -> Result<(), Mismatch> {
    let fail = || {
        Err(Mismatch {
            path: path.to_owned(),
            expected: short(expected),
            actual: short(actual),
        })
    };
    match (expected, actual) {
        (Value::Object(e), _) if e.len() == 1 && e.contains_key("$contains") => {
            match (e["$contains"].as_str(), actual.as_str()) {
                (Some(needle), Some(hay)) if hay.contains(needle) => Ok(()),
                _ => fail(),
            }
        }
        (Value::String(tag), Value::Object(a)) if a.len() == 1 && a.contains_key(tag) => Ok(()),
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let at = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) => matches(ev, av, &at)?,
                    None => {
                        return Err(Mismatch {
                            path: at,
                            expected: short(ev),
                            actual: "no such field".into(),
                        });
                    }
                }
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(Mismatch {
                    path: path.to_owned(),
                    expected: format!("{} items: {}", e.len(), short(expected)),
                    actual: format!("{} items: {}", a.len(), short(actual)),
                });
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                matches(ev, av, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (e, a) if e == a => Ok(()),
        (e, a) => match (numeric(e), numeric(a)) {
            (Some(x), Some(y)) if x == y => Ok(()),
            _ => fail(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(e: Value, a: Value) {
        assert_eq!(matches(&e, &a, "result"), Ok(()), "{e} should match {a}");
    }

    fn path_of(e: Value, a: Value) -> String {
        matches(&e, &a, "result")
            .expect_err("should not match")
            .path
    }

    #[test]
    fn objects_match_on_the_fields_they_name() {
        ok(
            json!({"ok": {"sequence": 3}}),
            json!({"ok": {"sequence": "3", "version": "7"}}),
        );
        assert_eq!(
            path_of(
                json!({"ok": {"pruned": 1}}),
                json!({"ok": {"sequence": "3"}})
            ),
            "result.ok.pruned"
        );
        assert_eq!(
            path_of(
                json!({"ok": {"sequence": 4}}),
                json!({"ok": {"sequence": "3"}})
            ),
            "result.ok.sequence"
        );
    }

    #[test]
    fn a_string_matches_a_variant_of_that_case() {
        ok(json!("ok"), json!({"ok": null}));
        ok(
            json!({"error": "corrupt"}),
            json!({"error": {"corrupt": {"kind": "truncated"}}}),
        );
        ok(json!({"error": "not-found"}), json!({"error": "not-found"}));
        assert_eq!(
            path_of(json!("ok"), json!({"error": "not-found"})),
            "result"
        );
        assert_eq!(
            path_of(
                json!({"error": "invalid"}),
                json!({"error": {"fenced": {}}})
            ),
            "result.error"
        );
    }

    #[test]
    fn arrays_match_exactly_in_order() {
        ok(json!([["m1"], ["m2"]]), json!([["m1"], ["m2"]]));
        assert_eq!(path_of(json!([["m1"]]), json!([["m1"], ["m2"]])), "result");
        assert_eq!(
            path_of(json!([["m2"], ["m1"]]), json!([["m1"], ["m2"]])),
            "result[0][0]"
        );
    }

    #[test]
    fn integers_match_by_value_as_numbers_or_decimal_strings() {
        ok(json!(3), json!("3"));
        ok(json!("18446744073709551615"), json!("18446744073709551615"));
        ok(json!(-5), json!("-5"));
        ok(json!(3), json!(3));
        assert!(matches(&json!(3), &json!("4"), "r").is_err());
        assert!(matches(&json!(3), &json!("x3"), "r").is_err());
        assert!(matches(&json!(true), &json!("true"), "r").is_err());
        assert!(matches(&json!(null), &json!("null"), "r").is_err());
        ok(json!(true), json!(true));
    }

    #[test]
    fn contains_matches_a_substring() {
        ok(
            json!({"$contains": "injected"}),
            json!("commit: storage failed: injected fault on commit"),
        );
        assert!(matches(&json!({"$contains": "x"}), &json!("abc"), "r").is_err());
        assert!(matches(&json!({"$contains": "1"}), &json!(1), "r").is_err());
    }
}
