"""One SQLite file, two hosts: the Rust CLI (`ckpt`, built by `make build`) reads what the
Python host wrote and the other way round, through the same component and schema."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from pipeline_checkpoint import Checkpoint, Checkpointer, Latest, Options, SqliteStorage, Watermark
from conftest import REPO

CKPT = Path(os.environ.get("CKPT_BIN", REPO / "target" / "release" / "ckpt"))


def ckpt(db: Path, *args: str) -> object:
    assert CKPT.is_file(), f"no Rust CLI at {CKPT}: build it with `make build` (or set CKPT_BIN)"
    done = subprocess.run(
        [str(CKPT), "--store", f"sqlite:{db}", "--namespace", "interop", "--max-retained", "2",
         "--json", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"ckpt {' '.join(args)}: exit {done.returncode}: {done.stderr}"
    return json.loads(done.stdout)


def test_rust_cli_and_python_host_share_one_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    store = SqliteStorage(db)
    checkpointer = Checkpointer.open(store, None, Options("interop", 2, 1 << 20))
    checkpointer.write(Checkpoint("r1", "parse", 3, 1, Watermark(100, 0), 0))

    got = ckpt(db, "get", "--run", "r1", "--stage", "parse")
    assert (got["sequence"], got["watermark"]["offset"]) == (3, 100)  # type: ignore[index]

    ckpt(db, "write", "--run", "r1", "--stage", "parse", "--sequence", "4", "--epoch", "1",
         "--offset", "120")  # fmt: skip
    resume = checkpointer.resume_point("r1", "parse")
    assert resume.origin == Latest()
    assert (resume.point.sequence, resume.point.watermark.offset) == (4, 120)

    # Python goes on from the Rust write: versions come from the one shared counter.
    receipt = checkpointer.write(Checkpoint("r1", "parse", 5, 1, Watermark(130, 0), 0))
    assert receipt.pruned == 1
    history = ckpt(db, "history", "--run", "r1", "--stage", "parse")
    assert [c["sequence"] for c in history["checkpoints"]] == [4, 5]  # type: ignore[index]
    store.close()
