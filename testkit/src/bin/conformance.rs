//! `conformance`: expands the conformance cases for every runner, and checks the transcripts
//! the runners wrote (tests/conformance/README.md, "Expanded cases" and "Transcripts").
//!
//! ```text
//! conformance expand CASES_DIR OUT_FILE [--golden DIR]
//! conformance check EXPANDED_FILE TRANSCRIPTS_DIR [--require HOST:BACKEND]... [--host HOST]...
//! ```
//!
//! Exit status: 0 ok, 1 a case file is invalid or a check failed, 2 usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use checkpoint_testkit::conformance::{self, CheckOptions};

const USAGE: &str = "usage:
  conformance expand CASES_DIR OUT_FILE [--golden DIR]
      (golden vectors default to CASES_DIR/../../golden)
  conformance check EXPANDED_FILE TRANSCRIPTS_DIR [--require HOST:BACKEND]... [--host HOST]...
      (transcripts are TRANSCRIPTS_DIR/HOST/BACKEND/CASE.json)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("expand") => expand(&args[1..]),
        Some("check") => check(&args[1..]),
        _ => Err(None),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Some(message)) => {
            eprintln!("conformance: {message}");
            ExitCode::from(1)
        }
        Err(None) => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Positional arguments, and `(flag, value)` pairs.
type Parsed = (Vec<String>, Vec<(String, String)>);

/// Positional arguments and `--flag VALUE` (or `--flag=VALUE`) pairs.
fn parse(args: &[String], flags: &[&str]) -> Result<Parsed, Option<String>> {
    let (mut positional, mut pairs) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if let Some(flag) = arg.strip_prefix("--") {
            let (flag, value) = match flag.split_once('=') {
                Some((flag, value)) => (flag, value.to_owned()),
                None => (flag, it.next().ok_or(None)?.clone()),
            };
            if !flags.contains(&flag) {
                return Err(None);
            }
            pairs.push((flag.to_owned(), value));
        } else {
            positional.push(arg.clone());
        }
    }
    Ok((positional, pairs))
}

fn expand(args: &[String]) -> Result<bool, Option<String>> {
    let (positional, flags) = parse(args, &["golden"])?;
    let [cases, out] = &positional[..] else {
        return Err(None);
    };
    let cases = Path::new(cases);
    let golden = flags
        .last()
        .map_or_else(|| cases.join("../../golden"), |(_, d)| PathBuf::from(d));
    let doc = match conformance::expand_dir(cases, &golden) {
        Ok(doc) => doc,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return Err(Some(format!(
                "{} problems in {}; nothing written",
                errors.len(),
                cases.display()
            )));
        }
    };
    let text = serde_json::to_string_pretty(&doc).map_err(|e| Some(e.to_string()))?;
    if let Some(dir) = Path::new(out)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| Some(format!("{}: {e}", dir.display())))?;
    }
    std::fs::write(out, text + "\n").map_err(|e| Some(format!("{out}: {e}")))?;
    let cases_n = doc["cases"].as_array().map_or(0, Vec::len);
    let steps: usize = doc["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["steps"].as_array().map_or(0, Vec::len))
        .sum();
    let files = doc["files"].as_array().map_or(0, Vec::len);
    println!("expanded {cases_n} cases ({steps} steps) from {files} files into {out}");
    Ok(true)
}

fn check(args: &[String]) -> Result<bool, Option<String>> {
    let (positional, flags) = parse(args, &["require", "host"])?;
    let [expanded, dir] = &positional[..] else {
        return Err(None);
    };
    let mut options = CheckOptions::default();
    for (flag, value) in flags {
        if flag == "host" {
            options.hosts.get_or_insert_with(Vec::new).push(value);
        } else {
            let (host, backend) = value
                .split_once(':')
                .ok_or_else(|| Some(format!("--require {value}: expected HOST:BACKEND")))?;
            options.require.push((host.to_owned(), backend.to_owned()));
        }
    }
    let text = std::fs::read_to_string(expanded).map_err(|e| Some(format!("{expanded}: {e}")))?;
    let doc = serde_json::from_str(&text).map_err(|e| Some(format!("{expanded}: {e}")))?;
    let report = conformance::check(&doc, Path::new(dir), &options)
        .map_err(|e| Some(format!("{expanded}: {e}")))?;
    for failure in &report.failures {
        println!("FAIL {failure}");
    }
    println!("{}", report.summary());
    Ok(report.ok())
}
