"""The conformance runner fails on what it must fail on; `run-tests.sh` plays the real suite."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import REPO

sys.path.insert(0, str(REPO / "python"))
import conformance_runner as runner  # noqa: E402

CASE = {
    "name": "write-then-get",
    "description": "a write reads back",
    "covers": [],
    "acks": [["m1"]],
    "keys": ["ckpt/test/run/stage/latest"],
    "steps": [
        {
            "op": "write",
            "checkpoint": {"sequence": 1, "watermark": {"offset": 10}},
            "batch": ["m1"],
            "expect": {"ok": {"sequence": "1", "acks": {"acked": 1}}},
            "storage-calls": {"get": 1, "commit": 1, "ack": 1},
        },
        {"op": "get", "expect": {"ok": {"watermark": {"offset": 10}}}},
    ],
}


def write_cases(tmp_path: Path, *cases: dict, name: str = "cases.json") -> Path:
    (tmp_path / name).write_text(json.dumps({"description": "t", "cases": list(cases)}))
    return tmp_path


def test_a_passing_case_counts_on_both_backends(tmp_path) -> None:
    summary = runner.run(write_cases(tmp_path, CASE))
    assert summary.failures == []
    assert (summary.passed, summary.total, summary.files) == (2, 2, 1)
    assert summary.line() == "conformance (python): 2 of 2 passed (1 cases x 2 backends, 1 files)"


def test_a_wrong_expectation_fails_with_file_case_backend_and_step(tmp_path) -> None:
    case = json.loads(json.dumps(CASE))
    case["steps"][0]["expect"]["ok"]["acks"] = {"acked": 2}
    summary = runner.run(write_cases(tmp_path, case))
    assert summary.passed == 0 and len(summary.failures) == 2
    assert "cases.json / write-then-get / dict: step 0 (write)" in summary.failures[0]
    assert "expected 2, got 1" in summary.failures[0]


def test_wrong_storage_calls_and_logs_fail(tmp_path) -> None:
    calls = json.loads(json.dumps(CASE))
    calls["steps"][0]["storage-calls"]["commit"] = 2
    keys = json.loads(json.dumps(CASE))
    keys["name"] = "keys"
    keys["keys"] = []
    summary = runner.run(write_cases(tmp_path, calls, keys))
    assert summary.passed == 0 and len(summary.failures) == 4
    assert any("storage-calls.commit" in f for f in summary.failures)
    assert any("after the last step" in f and "keys" in f for f in summary.failures)


def test_unknown_fields_ops_and_files_fail(tmp_path) -> None:
    typo = json.loads(json.dumps(CASE))
    typo["steps"][1]["expcet"] = "ok"
    bad_op = json.loads(json.dumps(CASE))
    bad_op["name"] = "bad-op"
    bad_op["steps"] = [{"op": "teleport"}]
    write_cases(tmp_path, typo, bad_op)
    (tmp_path / "notes.txt").write_text("not a case file")
    (tmp_path / "broken.json").write_text("{")
    summary = runner.run(tmp_path)
    text = "\n".join(summary.failures)
    assert summary.passed == 0
    assert "unknown step field `expcet`" in text
    assert "unknown op 'teleport'" in text
    assert "notes.txt: not a .json case file" in text
    assert "broken.json: not JSON" in text


def test_repeated_case_names_fail(tmp_path) -> None:
    write_cases(tmp_path, CASE, name="a.json")
    write_cases(tmp_path, CASE, name="b.json")
    summary = runner.run(tmp_path)
    assert any("repeated" in f for f in summary.failures)


def test_matching_rules() -> None:
    runner.matches({"a": 1}, {"a": 1, "b": 2}, "x")  # extra fields are ignored
    runner.matches("corrupt", {"corrupt": {"kind": "truncated"}}, "x")  # bare case name
    runner.matches("18446744073709551615", 2**64 - 1, "x")  # decimal string for a number
    runner.matches({"$contains": "lo"}, "hello", "x")
    for expected, actual in [([1], [1, 2]), ("1", True), ({"a": 1}, {}), (1, "1")]:
        try:
            runner.matches(expected, actual, "x")
        except runner.CaseError:
            continue
        raise AssertionError(f"{expected!r} should not match {actual!r}")
