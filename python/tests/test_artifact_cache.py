"""The compiled-component cache (`_cache`): a hit deserializes a verified entry; a damaged,
foreign or refused entry is never deserialized but recompiled and rewritten; a directory others
could write is refused (and the runtime still works); entries are pruned to the size cap,
least recently used first. The same rules as the Rust host's cache (host/src/runtime/cache.rs)."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from pathlib import Path

import pytest

from pipeline_checkpoint import (
    ArtifactCacheError,
    Checkpoint,
    Checkpointer,
    DictStorage,
    Options,
    Runtime,
    Watermark,
)
from pipeline_checkpoint import _cache

OPTIONS = Options(namespace="cache", max_retained=1, max_checkpoint_bytes=1 << 20)


def works(runtime: Runtime) -> None:
    """A checkpoint written and read through `runtime`."""
    checkpointer = Checkpointer.open(DictStorage(), None, OPTIONS, runtime=runtime)
    checkpointer.write(Checkpoint("run", "stage", 1, 1, Watermark(1, 0), 0))
    assert checkpointer.get("run", "stage").sequence == 1


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_second_runtime_loads_the_entry_the_first_wrote(tmp_path: Path) -> None:
    cache = tmp_path / "a" / "cache"
    first = Runtime(cache_dir=cache)
    assert first.artifact_source == "compiled"
    assert first.artifact_cache_error is None
    entry = first.artifact_cache_path
    assert entry is not None and entry.is_file() and entry.parent == cache.resolve()
    assert entry.name.endswith(".cwasm") and "-py-" in entry.name
    assert mode(cache) == 0o700 and mode(tmp_path / "a") == 0o700
    assert mode(entry) == 0o600
    assert list(cache.glob(".*.tmp")) == []

    second = Runtime(cache_dir=cache)
    assert second.artifact_source == "cache"
    assert second.artifact_cache_path == entry
    works(second)


def test_no_cache_when_told_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKPT_CACHE_DIR", str(tmp_path / "env"))
    runtime = Runtime(cache_dir=False)
    assert runtime.artifact_source == "compiled" and runtime.artifact_cache_path is None
    assert not (tmp_path / "env").exists()


def test_the_default_directory_follows_the_rust_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CKPT_CACHE_DIR", str(tmp_path / "env"))
    assert _cache.default_cache_dir() == tmp_path / "env"
    assert Runtime().artifact_cache_path.parent == (tmp_path / "env").resolve()
    monkeypatch.setenv("CKPT_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _cache.default_cache_dir() == tmp_path / "xdg" / "checkpoint-component"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _cache.default_cache_dir() == tmp_path / "home" / ".cache" / "checkpoint-component"


def test_the_entry_name_keys_the_component_and_the_engine_settings() -> None:
    a = _cache.entry_name(b"component a", "epoch_interruption=1")
    assert a == _cache.entry_name(b"component a", "epoch_interruption=1")
    assert a != _cache.entry_name(b"component b", "epoch_interruption=1")
    assert a != _cache.entry_name(b"component a", "epoch_interruption=0")


def damage(entry: Path, at: int) -> None:
    data = bytearray(entry.read_bytes())
    data[at] ^= 0xFF
    entry.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "how",
    ["artifact byte flipped", "checksum byte flipped", "truncated", "no trailer",
     "checksum matches but wasmtime refuses"],
)
def test_a_damaged_entry_is_rejected_then_rebuilt(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    entry = Runtime(cache_dir=cache).artifact_cache_path
    good = entry.read_bytes()
    if how == "artifact byte flipped":
        damage(entry, len(good) // 2)
    elif how == "checksum byte flipped":
        damage(entry, len(good) - 1)
    elif how == "truncated":
        entry.write_bytes(good[:1000])
    elif how == "no trailer":
        entry.write_bytes(good[: -len(_cache.MAGIC) - 32])
    else:
        junk = b"\0asm not a compiled component" * 100
        entry.write_bytes(junk + _cache.MAGIC + hashlib.sha256(junk).digest())
    with caplog.at_level(logging.WARNING, logger="pipeline_checkpoint"):
        rebuilt = Runtime(cache_dir=cache)
    assert rebuilt.artifact_source == "compiled"
    assert "ignoring a damaged or untrusted artifact cache entry" in caplog.text
    works(rebuilt)
    assert entry.read_bytes() == good  # the same artifact, written again
    assert Runtime(cache_dir=cache).artifact_source == "cache"


def test_an_entry_others_may_write_is_not_loaded(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    entry = Runtime(cache_dir=cache).artifact_cache_path
    os.chmod(entry, 0o666)
    again = Runtime(cache_dir=cache)
    assert again.artifact_source == "compiled"
    assert mode(entry) == 0o600  # replaced by a private one


def test_an_entry_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    entry = Runtime(cache_dir=cache).artifact_cache_path
    elsewhere = tmp_path / "elsewhere.cwasm"
    os.replace(entry, elsewhere)
    entry.symlink_to(elsewhere)
    assert Runtime(cache_dir=cache).artifact_source == "compiled"
    assert not entry.is_symlink()


def refused(cache: Path, kind: str) -> None:
    runtime = Runtime(cache_dir=cache)
    assert runtime.artifact_source == "compiled"
    assert runtime.artifact_cache_path is None
    error = runtime.artifact_cache_error
    assert isinstance(error, ArtifactCacheError) and error.kind == kind, error
    assert error.dir == cache
    works(runtime)  # a refused cache never stops the runtime


def test_a_directory_its_group_or_everyone_may_write_is_refused(tmp_path: Path) -> None:
    for bits in (0o770, 0o707):
        cache = tmp_path / f"cache-{bits:o}"
        cache.mkdir(mode=0o700)
        os.chmod(cache, bits)
        refused(cache, "WritableByOthers")
        assert list(cache.iterdir()) == []  # never written


def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        cache = tmp_path / "theirs"
        cache.mkdir(mode=0o700)
        os.chown(cache, 65534, 65534)
    else:
        cache = Path("/")  # root's, and this process is not root
    refused(cache, "OtherOwner")


def test_a_directory_under_one_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # no sticky bit: anyone could rename the cache away
    refused(shared / "cache", "UnsafeParent")
    os.chmod(shared, 0o1777)  # sticky, as /tmp: accepted
    assert Runtime(cache_dir=shared / "cache").artifact_cache_error is None


def test_a_symlinked_or_file_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    refused(tmp_path / "link", "Symlink")
    (tmp_path / "file").write_bytes(b"")
    refused(tmp_path / "file", "NotADirectory")


def make_entry(dir: Path, name: str, size: int, age_s: float) -> Path:
    path = dir / name
    path.write_bytes(b"x" * size)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_pruning_removes_least_recently_used_entries_down_to_the_cap(tmp_path: Path) -> None:
    oldest = make_entry(tmp_path, "a.cwasm", 1000, 300)
    older = make_entry(tmp_path, "b.cwasm", 1000, 200)
    newer = make_entry(tmp_path, "c.cwasm", 1000, 100)
    kept = make_entry(tmp_path, "kept.cwasm", 1000, 400)  # the entry just written: never removed
    other = make_entry(tmp_path, "notes.txt", 5000, 500)
    stale = make_entry(tmp_path, ".x.cwasm.1-2.tmp", 10, _cache.STALE_TEMP_AGE_S + 60)
    fresh = make_entry(tmp_path, ".y.cwasm.1-2.tmp", 10, 1)
    assert _cache.prune(tmp_path, kept, 2500) == 2
    assert not oldest.exists() and not older.exists()
    assert newer.exists() and kept.exists() and other.exists() and fresh.exists()
    assert not stale.exists()


def test_a_new_entry_prunes_the_directory_to_the_size_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    entry = Runtime(cache_dir=cache).artifact_cache_path
    size = entry.stat().st_size
    entry.unlink()
    old = [make_entry(cache, f"old-{i}.cwasm", size // 2, 100 * (3 - i)) for i in range(3)]
    # Room for the new entry and one of the old ones.
    monkeypatch.setattr(_cache, "CACHE_MAX_BYTES", size + size // 2)
    assert Runtime(cache_dir=cache).artifact_source == "compiled"
    assert entry.exists()
    assert [p.exists() for p in old] == [False, False, True]
    assert Runtime(cache_dir=cache).artifact_source == "cache"
