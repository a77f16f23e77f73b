"""Storage backends for the component's `storage` import: the `Storage` protocol, a dict store
and a `sqlite3` store.

The contract is the Rust host's `Storage` trait (`host/src/storage/mod.rs`), method by method.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import sqlite3
import threading
from typing import Protocol, Sequence, runtime_checkable

from .errors import StorageFailed, StorageTimeout, StorageUnavailable
from .types import CommitConflict, CommitOutcome, Committed, Delete, Entry, Put, Write


@runtime_checkable
class Storage(Protocol):
    """Durable key-value storage with conditional, atomic batches.

    Keys and values
        Keys are opaque `str` built by the component; a backend stores them as data and never
        interprets them (no paths). Every valid string is a key, `%`, `_`, `/`, `..`, NUL and
        any Unicode included. Values are opaque `bytes`, returned exactly as committed.

    Versions
        Every stored value has a version: an int of at least 1 that changes on every write of
        its key and is never reused for that key, not even after the key is deleted and written
        again. 0 means "absent". One increasing counter per store, advanced in the same atomic
        step as the write it numbers, meets this.

    Errors
        Raise `StorageUnavailable`, `StorageTimeout` or `StorageFailed` (from
        `pipeline_checkpoint.errors`) when the backend itself fails; never for an answer such as
        "missing" or "conflict". Any other exception counts as `failed`. The component then
        answers `StorageFailure` for the call and acks nothing; the checkpointer stays usable.
        A return value outside this contract (say, the wrong number of versions) is answered as
        `failed` too.

    Concurrency
        One instance serves one checkpointer at a time. Several instances may share one
        underlying store (one `DictStorage` handed to several checkpointers, connections to one
        SQLite file); conditional commits make concurrent writers safe, and a backend
        serialises commits so that each sees the state left by the previous.
    """

    def get(self, key: str) -> Entry | None:
        """The value and current version of `key`, or `None` when absent. Sees every commit
        that returned before the read began. Never writes."""
        ...

    def commit(self, writes: Sequence[Write]) -> CommitOutcome:
        """Applies `writes` all-or-nothing and returns only once the result is durable.

        - `expected_version=v` requires the key's current version to be `v` (0: absent);
          `None` writes unconditionally.
        - If every condition holds, all writes are applied atomically and durably, and the
          answer is `Committed(versions)`: one per write in batch order, the new version for a
          put, 0 for a delete. Deleting an absent key is not an error.
        - If a condition fails, nothing is applied: `CommitConflict(i)`, `i` the first failing
          write in batch order.
        - `StorageTimeout` means the outcome is unknown; other errors mean nothing was applied.
        - Keys in one batch are distinct; a batch that repeats a key raises `StorageFailed`
          and applies nothing. An empty batch answers `Committed(())`.
        """
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix` (exactly: no pattern characters), in ascending
        order of their UTF-8 bytes (which for valid strings is code point order, Python's
        `sorted`). An empty prefix lists every key. Never writes."""
        ...


def check_distinct_keys(writes: Sequence[Write]) -> None:
    """Raises `StorageFailed` for a batch that writes one key twice (shared by the backends)."""
    seen: set[str] = set()
    for w in writes:
        if w.key in seen:
            raise StorageFailed(f"batch writes key {w.key!r} more than once")
        seen.add(w.key)


def check_ops(writes: Sequence[Write]) -> None:
    """Raises `StorageFailed` for a write whose op is neither `Put` nor `Delete`, before
    anything is applied."""
    for w in writes:
        if not isinstance(w.op, (Put, Delete)):
            raise StorageFailed(f"write to {w.key!r} has unknown op {w.op!r}")


class DictStorage:
    """A store in a Python dict: for tests and demos; nothing survives the process.

    Hand one object to several checkpointers to share it (a crash test reopens over the same
    object). Thread-safe: commits are serialised by a lock."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[bytes, int]] = {}
        self._last_version = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        with self._lock:
            found = self._entries.get(key)
        return Entry(found[0], found[1]) if found is not None else None

    def commit(self, writes: Sequence[Write]) -> CommitOutcome:
        check_distinct_keys(writes)
        check_ops(writes)
        with self._lock:
            for index, w in enumerate(writes):
                if w.expected_version is None:
                    continue
                found = self._entries.get(w.key)
                if (found[1] if found is not None else 0) != w.expected_version:
                    return CommitConflict(index)
            versions = []
            for w in writes:
                if isinstance(w.op, Put):
                    self._last_version += 1
                    self._entries[w.key] = (bytes(w.op.value), self._last_version)
                    versions.append(self._last_version)
                else:
                    self._entries.pop(w.key, None)
                    versions.append(0)
            return Committed(tuple(versions))

    def list_keys(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(k for k in self._entries if k.startswith(prefix))


# --------------------------------------------------------------------------------------------
# SQLite

#: The schema version this module writes; the same schema as the Rust host's `SqliteStorage`,
#: so one database file serves both hosts.
SCHEMA_VERSION = 1

#: The tables of a new store, inside this package: the Rust host's
#: `host/src/storage/sqlite-schema.sql`, which the wheel build puts here (pyproject.toml), so
#: both hosts create the same tables from one text.
SCHEMA_RESOURCE = "sqlite-schema.sql"

#: How long a statement waits for another connection's lock before failing with `timeout`.
BUSY_TIMEOUT_S = 5.0


def _sqlite_error(op: str, e: sqlite3.Error) -> Exception:
    text = str(e)
    if isinstance(e, sqlite3.OperationalError) and "locked" in text:
        return StorageTimeout(
            f"sqlite {op}: the database stayed locked by another connection for more than "
            f"{BUSY_TIMEOUT_S:g}s: {text}"
        )
    if isinstance(e, sqlite3.OperationalError) and "unable to open" in text:
        return StorageUnavailable(f"sqlite {op}: cannot open the database file: {text}")
    return StorageFailed(f"sqlite {op}: {text}")


def _prefix_successor(prefix: bytes) -> bytes | None:
    """The smallest byte string above every string starting with `prefix`, or None. UTF-8 never
    holds 0xFF, so for a key prefix this is the prefix with its last byte incremented."""
    bound = bytearray(prefix)
    while bound:
        last = bound.pop()
        if last < 0xFF:
            bound.append(last + 1)
            return bytes(bound)
    return None


@functools.lru_cache(maxsize=None)
def _schema_statements() -> tuple[str, ...]:
    """The statements of `SCHEMA_RESOURCE`, one by one: `executescript` would first commit the
    transaction they must run in."""
    resource = importlib.resources.files(__package__) / SCHEMA_RESOURCE
    if not resource.is_file():
        raise StorageFailed(
            f"the SQLite schema {SCHEMA_RESOURCE} is missing from the installed package "
            f"({resource}): install a wheel built by python/dist.sh, which puts it there"
        )
    statements: list[str] = []
    pending = ""
    for line in resource.read_text(encoding="utf-8").splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if any(line.strip() and not line.lstrip().startswith("--") for line in pending.splitlines()):
        raise StorageFailed(f"the SQLite schema {SCHEMA_RESOURCE} ends in an unfinished statement")
    return tuple(statements)


class SqliteStorage:
    """A store in one SQLite database file (stdlib `sqlite3`).

    WAL journal with `synchronous=FULL` (a commit is one transaction with one durable sync),
    every commit one `BEGIN IMMEDIATE` transaction (the write lock is taken before the
    conditions are read), and a version counter in the same transaction, so versions are never
    reused. Keys are TEXT with the BINARY collation (UTF-8 byte order) and never used as paths.

    Each object is one connection: open one per checkpointer. Several connections, in one
    process or many, may share a file. The schema is the Rust host's, so the `ckpt` CLI reads
    what this store writes and the other way round.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            # isolation_level=None: no implicit transactions; each commit opens its own.
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise StorageUnavailable(f"cannot open SQLite database {self.path}: {e}") from e
        self._conn = conn
        self._lock = threading.Lock()
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageFailed(
                    f"SQLite database {self.path} cannot use WAL mode (journal mode is {mode!r})"
                )
            conn.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as e:
            conn.close()
            raise StorageFailed(f"cannot prepare the schema of {self.path}: {e}") from e
        except BaseException:
            conn.close()
            raise

    def _migrate(self) -> None:
        conn = self._conn
        statements = _schema_statements()
        conn.execute("BEGIN IMMEDIATE")
        try:
            # The version is read only where its table exists: the schema file creates that
            # table with the others, when there is no version yet.
            (has_schema_table,) = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master"
                " WHERE type = 'table' AND name = 'ckpt_schema')"
            ).fetchone()
            row = (
                conn.execute("SELECT version FROM ckpt_schema WHERE id = 1").fetchone()
                if has_schema_table
                else None
            )
            if row is None:
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO ckpt_schema (id, version) VALUES (1, ?)", (SCHEMA_VERSION,)
                )
            elif row[0] > SCHEMA_VERSION:
                raise StorageFailed(
                    f"the database has schema version {row[0]}, newer than this build "
                    f"understands ({SCHEMA_VERSION}): upgrade this program"
                )
            elif row[0] != SCHEMA_VERSION:
                raise StorageFailed(f"the database has unknown schema version {row[0]}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Closes the connection; later calls fail with `StorageUnavailable`."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "SqliteStorage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key: str) -> Entry | None:
        with self._lock:
            try:
                row = self._conn.execute(
                    "SELECT value, version FROM ckpt_entries WHERE key = ?", (key,)
                ).fetchone()
            except sqlite3.ProgrammingError as e:  # a closed connection
                raise StorageUnavailable(f"sqlite get: {e}") from e
            except sqlite3.Error as e:
                raise _sqlite_error("get", e) from e
        if row is None:
            return None
        if row[1] < 1:
            raise StorageFailed(f"sqlite: stored version {row[1]} is not positive")
        return Entry(bytes(row[0]), row[1])

    def commit(self, writes: Sequence[Write]) -> CommitOutcome:
        check_distinct_keys(writes)
        check_ops(writes)
        with self._lock:
            conn = self._conn
            try:
                # IMMEDIATE takes the write lock up front, so the conditions read below cannot
                # change before this transaction commits.
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.ProgrammingError as e:
                raise StorageUnavailable(f"sqlite commit: {e}") from e
            except sqlite3.Error as e:
                raise _sqlite_error("commit", e) from e
            try:
                outcome = self._apply(conn, writes)
                if isinstance(outcome, Committed):
                    conn.execute("COMMIT")
                else:
                    conn.execute("ROLLBACK")  # nothing was changed anyway
                return outcome
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise _sqlite_error("commit", e) from e
                raise

    @staticmethod
    def _apply(conn: sqlite3.Connection, writes: Sequence[Write]) -> CommitOutcome:
        for index, w in enumerate(writes):
            if w.expected_version is None:
                continue
            row = conn.execute("SELECT version FROM ckpt_entries WHERE key = ?", (w.key,)).fetchone()
            if (row[0] if row is not None else 0) != w.expected_version:
                return CommitConflict(index)
        (last,) = conn.execute(
            "SELECT last_version FROM ckpt_version_counter WHERE id = 1"
        ).fetchone()
        versions = []
        for w in writes:
            if isinstance(w.op, Put):
                last += 1
                conn.execute(
                    "INSERT INTO ckpt_entries (key, value, version) VALUES (?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                    " version = excluded.version",
                    (w.key, bytes(w.op.value), last),
                )
                versions.append(last)
            else:
                conn.execute("DELETE FROM ckpt_entries WHERE key = ?", (w.key,))
                versions.append(0)
        # The counter moves in the same transaction as the writes it numbered, so a version is
        # never handed out twice, not even across a crash.
        conn.execute("UPDATE ckpt_version_counter SET last_version = ? WHERE id = 1", (last,))
        return Committed(tuple(versions))

    def list_keys(self, prefix: str) -> list[str]:
        # A range scan, not LIKE: `%` and `_` in a prefix are data. The upper bound may not be
        # valid UTF-8, so it is bound as a BLOB and cast; BINARY compares both with memcmp.
        end = _prefix_successor(prefix.encode("utf-8"))
        with self._lock:
            try:
                if end is None:
                    rows = self._conn.execute("SELECT key FROM ckpt_entries ORDER BY key")
                else:
                    rows = self._conn.execute(
                        "SELECT key FROM ckpt_entries"
                        " WHERE key >= ? AND key < CAST(? AS TEXT) ORDER BY key",
                        (prefix, end),
                    )
                return [r[0] for r in rows.fetchall()]
            except sqlite3.ProgrammingError as e:
                raise StorageUnavailable(f"sqlite list-keys: {e}") from e
            except sqlite3.Error as e:
                raise _sqlite_error("list-keys", e) from e
