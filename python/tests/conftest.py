"""Shared fixtures: every test gets its own stores and temp dir; the component is compiled once
per process (the shared `Runtime`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkpoint import DictStorage, RecordingConsumer, SqliteStorage

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["dict", "sqlite3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path):
    """A fresh, empty store of each kind."""
    if request.param == "dict":
        yield DictStorage()
    else:
        store = SqliteStorage(tmp_path / "checkpoints.db")
        yield store
        store.close()


@pytest.fixture
def consumer() -> RecordingConsumer:
    return RecordingConsumer()
