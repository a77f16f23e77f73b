"""The storage contract (`pipeline_checkpoint.storage.Storage`) on the dict and sqlite3 stores,
and what only the SQLite store promises (durability across connections, its pragmas and schema)."""

from __future__ import annotations

import sqlite3

import pytest

from pipeline_checkpoint import (
    CommitConflict,
    Committed,
    Delete,
    Entry,
    Put,
    SqliteStorage,
    Storage,
    StorageFailed,
    StorageUnavailable,
    Write,
)


def put(key: str, value: bytes, expected: int | None = None) -> Write:
    return Write(key, expected, Put(value))


def delete(key: str, expected: int | None = None) -> Write:
    return Write(key, expected, Delete())


def test_stores_meet_the_protocol(storage) -> None:
    assert isinstance(storage, Storage)


def test_get_returns_exactly_what_was_committed(storage) -> None:
    assert storage.get("k") is None
    value = bytes(range(256))
    out = storage.commit([put("k", value, 0)])
    assert isinstance(out, Committed) and len(out.versions) == 1 and out.versions[0] >= 1
    assert storage.get("k") == Entry(value, out.versions[0])


def test_versions_change_on_every_write_and_are_never_reused(storage) -> None:
    seen = []
    for round_ in range(3):
        (v,) = storage.commit([put("k", b"%d" % round_)]).versions
        seen.append(v)
        assert storage.commit([delete("k")]).versions == (0,)
        assert storage.get("k") is None
    assert len(set(seen)) == 3 and all(v >= 1 for v in seen)


def test_conditions_name_the_first_failing_write_and_apply_nothing(storage) -> None:
    (v,) = storage.commit([put("a", b"1", 0)]).versions
    out = storage.commit([put("b", b"2", 0), put("a", b"3", v + 100), put("c", b"4", 7)])
    assert out == CommitConflict(1)
    assert storage.get("b") is None and storage.get("a") == Entry(b"1", v)
    # 0 means "must be absent"; the right version passes.
    assert storage.commit([put("a", b"x", 0)]) == CommitConflict(0)
    ok = storage.commit([put("a", b"3", v), delete("never-there", 0)])
    assert isinstance(ok, Committed) and ok.versions[1] == 0
    assert storage.get("a").value == b"3"


def test_a_batch_repeating_a_key_is_refused_and_applies_nothing(storage) -> None:
    with pytest.raises(StorageFailed, match="more than once"):
        storage.commit([put("a", b"1"), put("b", b"2"), delete("a")])
    assert storage.list_keys("") == []


def test_a_batch_with_an_unknown_op_is_refused_and_applies_nothing(storage) -> None:
    with pytest.raises(StorageFailed, match="unknown op"):
        storage.commit([put("a", b"1"), Write("b", None, b"not an op")])  # type: ignore[arg-type]
    assert storage.list_keys("") == []


def test_empty_batch_commits_nothing(storage) -> None:
    assert storage.commit([]) == Committed(())


def test_list_keys_is_an_exact_prefix_in_byte_order(storage) -> None:
    keys = ["a%b", "a_b", "a/b", "ab", "a\x00", "é", "\U0001f600", "a", "b", "\uffff"]
    storage.commit([put(k, b"v") for k in keys])
    assert storage.list_keys("") == sorted(keys, key=lambda k: k.encode("utf-8"))
    assert storage.list_keys("a%") == ["a%b"]  # % and _ are data, not patterns
    assert storage.list_keys("a_") == ["a_b"]
    assert storage.list_keys("a") == sorted(
        [k for k in keys if k.startswith("a")], key=lambda k: k.encode("utf-8")
    )
    assert storage.list_keys("\uffff") == ["\uffff"]
    assert storage.list_keys("zz") == []


def test_sqlite_commits_are_seen_by_a_new_connection(tmp_path) -> None:
    path = tmp_path / "shared.db"
    first = SqliteStorage(path)
    (v,) = first.commit([put("k", b"durable", 0)]).versions
    first.close()
    second = SqliteStorage(path)
    assert second.get("k") == Entry(b"durable", v)
    # The counter is stored: a new connection never hands out a used version.
    (w,) = second.commit([put("j", b"x")]).versions
    assert w > v


def test_sqlite_two_connections_race_on_one_condition(tmp_path) -> None:
    a, b = SqliteStorage(tmp_path / "db"), SqliteStorage(tmp_path / "db")
    assert isinstance(a.commit([put("k", b"a", 0)]), Committed)
    assert b.commit([put("k", b"b", 0)]) == CommitConflict(0)
    assert b.get("k").value == b"a"


def test_sqlite_uses_wal_full_sync_and_the_rust_schema(tmp_path) -> None:
    path = tmp_path / "db"
    store = SqliteStorage(path)
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    raw = sqlite3.connect(path)
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"ckpt_schema", "ckpt_entries", "ckpt_version_counter"} <= tables
    assert raw.execute("SELECT version FROM ckpt_schema").fetchone()[0] == 1
    raw.close()


def test_sqlite_refuses_a_newer_schema(tmp_path) -> None:
    path = tmp_path / "db"
    SqliteStorage(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE ckpt_schema SET version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(StorageFailed, match="newer"):
        SqliteStorage(path)


def test_sqlite_closed_connection_is_unavailable(tmp_path) -> None:
    store = SqliteStorage(tmp_path / "db")
    store.close()
    with pytest.raises(StorageUnavailable):
        store.get("k")
    with pytest.raises(StorageUnavailable):
        store.commit([put("k", b"v")])
