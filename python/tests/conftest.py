"""Shared fixtures: every test gets its own stores and temp dir; the component is compiled once
per process (the shared `Runtime`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_checkpoint import DictStorage, RecordingConsumer, SqliteStorage

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


class Lying(DictStorage):
    """A dict store that answers its `nth` call of `call` (`get`, `commit` or `list-keys`) with
    `answer(argument)` instead of the truth, and tells the truth otherwise. A lying commit is
    applied first, then answered wrongly."""

    def __init__(self, call: str, answer, nth: int = 1) -> None:
        super().__init__()
        self.call, self.answer, self.nth = call, answer, nth
        self.calls = {"get": 0, "commit": 0, "list-keys": 0}

    def _lies(self, call: str) -> bool:
        self.calls[call] += 1
        return call == self.call and self.calls[call] == self.nth

    def get(self, key):
        return self.answer(key) if self._lies("get") else super().get(key)

    def commit(self, writes):
        truth = super().commit(writes)
        return self.answer(writes) if self._lies("commit") else truth

    def list_keys(self, prefix):
        return self.answer(prefix) if self._lies("list-keys") else super().list_keys(prefix)
