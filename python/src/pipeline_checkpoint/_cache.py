"""The compiled-component cache of the Python host: the same directory and the same rules as the
Rust host's artifact cache (host/src/runtime/cache.rs), so a process deserializes the component
(a few ms) instead of compiling it (0.1-0.2 s).

The cache is trusted code
-------------------------
An entry is native machine code that wasmtime maps and runs as this program: wasmtime cannot
check it, and the SHA-256 in each entry only catches damage. So the directory is used only if
nobody but this user (and root) can change what is in it:

- it is created with mode 0700 (missing parents too);
- it must be a real directory (not a symbolic link), owned by the effective user, and not
  writable by its group or by everyone;
- every directory above it must be owned by this user or root, and not writable by others
  unless it has the sticky bit (as `/tmp` has), so nobody else can swap it;
- an entry must be a regular file owned by this user and not writable by others.

A directory that fails these checks is never read or written: the component is compiled in
memory instead (slower start, same behaviour), a warning (logger `pipeline_checkpoint`) names
the reason and the fix, and `Runtime.artifact_cache_error` holds it as an `ArtifactCacheError`.
The cache never stops a program from starting.

Where: `Runtime(cache_dir=...)`; by default `$CKPT_CACHE_DIR`, else
`$XDG_CACHE_HOME/checkpoint-component`, else `~/.cache/checkpoint-component` (the Rust host's
directory: entries of the two hosts have different names and share the size cap).
`Runtime(cache_dir=False)` caches nothing.

An entry is named by the component's SHA-256 and a hash of what makes compiled code differ
(the wasmtime-py version, the machine, this host's engine settings, the entry format), and holds
`Component.serialize()`'s artifact, then `MAGIC`, then the artifact's SHA-256. It is read whole,
checked, and the checked bytes themselves are deserialized (no second read of the file). New
entries are written to a temporary file (mode 0600), synced, and renamed into place; then the
least recently used entries (modification time, which a hit refreshes) are removed until all
entries (`*.cwasm`, both hosts') fit in `CACHE_MAX_BYTES`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import secrets
import stat
import time
from dataclasses import dataclass
from importlib.metadata import version as _installed_version
from pathlib import Path

import wasmtime
from wasmtime.component import Component

_log = logging.getLogger("pipeline_checkpoint")

#: Largest total size of the entries (`*.cwasm`) kept in one cache directory, as in the Rust host.
CACHE_MAX_BYTES = 64 << 20
#: The trailer's magic; a new entry format gets a new one (old entries then fail the check).
MAGIC = b"ckpt-pycwasm1\n"
_DIGEST_LEN = 32
#: A temporary file older than this was left by a writer that died: pruning removes it.
STALE_TEMP_AGE_S = 3600.0
_WRITABLE_BY_OTHERS = 0o022


class ArtifactCacheError(Exception):
    """Why the cache directory was not used. Not a failure of the runtime (it compiled the
    component in memory and works); it says why the next start will not be faster.

    `kind`: `Unavailable`, `NotADirectory`, `Symlink`, `OtherOwner`, `WritableByOthers`,
    `UnsafeParent` (the Rust host's `ArtifactCacheErrorKind`). `dir`: the directory refused."""

    def __init__(self, kind: str, dir: Path, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.dir = dir


def default_cache_dir() -> Path | None:
    """The Rust host's default: `$CKPT_CACHE_DIR`, `$XDG_CACHE_HOME/checkpoint-component`,
    `~/.cache/checkpoint-component` (`$HOME`); None when none is set."""
    for name, sub in (("CKPT_CACHE_DIR", ()), ("XDG_CACHE_HOME", ("checkpoint-component",)),
                      ("HOME", (".cache", "checkpoint-component"))):
        value = os.environ.get(name)
        if value:
            return Path(value, *sub)
    return None


def entry_name(component_bytes: bytes, engine_settings: str) -> str:
    """The entry's file name: the component's SHA-256, and a hash of everything else that makes
    compiled code differ (so two wasmtime versions or settings never share an entry)."""
    key = "\n".join([
        f"wasmtime-py {_installed_version('wasmtime')}",
        f"{platform.system()} {platform.machine()}",
        engine_settings,
        MAGIC.decode().strip(),
    ])
    settings = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{hashlib.sha256(component_bytes).hexdigest()}-py-{settings}.cwasm"


@dataclass
class Loaded:
    component: Component
    #: "cache" (a verified entry) or "compiled".
    source: str
    #: The entry read or written, when the directory was usable.
    path: Path | None
    #: Why the configured directory was refused, if it was.
    cache_error: ArtifactCacheError | None


def load_component(
    engine: wasmtime.Engine, component_bytes: bytes, engine_settings: str, cache_dir: Path | None
) -> Loaded:
    """The compiled component: from a verified entry of `cache_dir`, else compiled (and then
    written to `cache_dir` when it is usable). Raises only what compiling raises."""
    dir_: Path | None = None
    cache_error = None
    if cache_dir is not None:
        try:
            dir_ = open_cache_dir(cache_dir)
        except ArtifactCacheError as e:
            _log.warning("not using the artifact cache; compiling the component in memory: %s", e)
            cache_error = e
    path = dir_ / entry_name(component_bytes, engine_settings) if dir_ is not None else None
    if path is not None:
        try:
            component = read_cached(engine, path)
        except (OSError, ValueError, wasmtime.WasmtimeError) as e:
            _log.warning(
                "ignoring a damaged or untrusted artifact cache entry %s; recompiling: %s", path, e
            )
        else:
            if component is not None:
                return Loaded(component, "cache", path, cache_error)
    component = Component(engine, component_bytes)
    if path is not None:
        try:
            write_cached(component, path)
            prune(path.parent, path, CACHE_MAX_BYTES)
        except OSError as e:
            _log.warning("cannot write the artifact cache entry %s; continuing without it: %s",
                         path, e)
    return Loaded(component, "compiled", path, cache_error)


def open_cache_dir(dir: Path) -> Path:
    """Creates `dir` (mode 0700, missing parents too) when missing, checks that only this user
    can change it, and returns its resolved path (every later access goes through it)."""
    def unavailable(what: str, e: OSError) -> ArtifactCacheError:
        return ArtifactCacheError(
            "Unavailable", dir, f"cannot {what} the artifact cache directory {dir}: {e}"
        )

    try:
        leaf = os.lstat(dir)
    except FileNotFoundError:
        try:
            _create_private_dir(dir)
            leaf = os.lstat(dir)
        except OSError as e:
            raise unavailable("create", e) from e
    except OSError as e:
        raise unavailable("inspect", e) from e
    if stat.S_ISLNK(leaf.st_mode):
        raise ArtifactCacheError(
            "Symlink", dir,
            f"the artifact cache directory {dir} is a symbolic link; name the directory it "
            "points to instead",
        )
    if not stat.S_ISDIR(leaf.st_mode):
        raise ArtifactCacheError(
            "NotADirectory", dir, f"the artifact cache directory {dir} is not a directory"
        )
    try:
        canonical = dir.resolve(strict=True)
    except OSError as e:
        raise unavailable("resolve", e) from e
    if os.name == "posix":
        _check_dir(dir, canonical)
    return canonical


def _create_private_dir(dir: Path) -> None:
    # Parents 0700 too, as the XDG base directory specification asks of $XDG_CACHE_HOME.
    os.makedirs(dir.parent, mode=0o700, exist_ok=True)
    try:
        os.mkdir(dir, 0o700)
    except FileExistsError:
        return  # made by another process meanwhile: checked like any existing directory
    os.chmod(dir, 0o700)  # the umask may have taken bits away


def _check_dir(dir: Path, canonical: Path) -> None:
    me = os.geteuid()
    try:
        meta = os.stat(canonical)
    except OSError as e:
        raise ArtifactCacheError(
            "Unavailable", dir, f"cannot inspect the artifact cache directory {dir}: {e}"
        ) from e
    if meta.st_uid != me:
        raise ArtifactCacheError(
            "OtherOwner", dir,
            f"the artifact cache directory {dir} is owned by uid {meta.st_uid}, not by this "
            f"process's user (uid {me}): its compiled code would run as this program; use a "
            "directory of your own (CKPT_CACHE_DIR or Runtime(cache_dir=...))",
        )
    mode = stat.S_IMODE(meta.st_mode)
    if mode & _WRITABLE_BY_OTHERS:
        raise ArtifactCacheError(
            "WritableByOthers", dir,
            f"the artifact cache directory {dir} has mode {mode:04o}: its group or everyone may "
            f"write it, and its compiled code would run as this program; run `chmod 700 {dir}` "
            "or use another directory",
        )
    for parent in canonical.parents:
        try:
            pmeta = os.stat(parent)
        except OSError as e:
            raise ArtifactCacheError(
                "Unavailable", dir, f"cannot inspect {parent} above the artifact cache: {e}"
            ) from e
        why = None
        pmode = stat.S_IMODE(pmeta.st_mode)
        if pmeta.st_uid not in (me, 0):
            why = f"is owned by uid {pmeta.st_uid}"
        elif pmode & _WRITABLE_BY_OTHERS and not pmode & stat.S_ISVTX:
            why = f"has mode {pmode:04o} (writable by others, no sticky bit)"
        if why is not None:
            raise ArtifactCacheError(
                "UnsafeParent", dir,
                f"{parent} above the artifact cache directory {dir} {why}, so another user "
                "could replace the cache; use a directory under one only you (or root) can write",
            )


def read_cached(engine: wasmtime.Engine, path: Path) -> Component | None:
    """The component in the entry at `path`; None when there is none. Raises `ValueError` for
    an entry that is damaged or not this user's, `WasmtimeError` when wasmtime refuses it."""
    try:
        meta = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(meta.st_mode):
        raise ValueError("the cache entry is not a regular file")
    if os.name == "posix":
        if meta.st_uid != os.geteuid():
            raise ValueError(
                f"the cache entry is owned by uid {meta.st_uid}, not by this process's user "
                f"(uid {os.geteuid()})"
            )
        mode = stat.S_IMODE(meta.st_mode)
        if mode & _WRITABLE_BY_OTHERS:
            raise ValueError(f"the cache entry has mode {mode:04o}: others may write it")
    # O_NOFOLLOW: the entry checked above is the file read, not a link swapped in since.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    trailer = len(MAGIC) + _DIGEST_LEN
    if len(data) < trailer:
        raise ValueError("the cache entry is truncated")
    artifact = memoryview(data)[: len(data) - trailer]
    if data[len(artifact): len(artifact) + len(MAGIC)] != MAGIC:
        raise ValueError("the cache entry has no trailer of this format")
    if hashlib.sha256(artifact).digest() != data[-_DIGEST_LEN:]:
        raise ValueError("the cache entry's SHA-256 does not match its contents")
    # The bytes checked are the bytes deserialized: wasmtime gets a copy of them, not the
    # file. It refuses an artifact of another wasmtime version or engine configuration itself.
    component = Component.deserialize(engine, bytes(artifact))
    try:
        os.utime(path)  # the most recently used entry is pruned last; best effort
    except OSError:
        pass
    return component


def write_cached(component: Component, path: Path) -> None:
    """Writes the entry atomically: a temporary file (mode 0600) in the same directory, synced,
    renamed over `path`, then the directory synced."""
    artifact = bytes(component.serialize())
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(artifact)
            f.write(MAGIC)
            f.write(hashlib.sha256(artifact).digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if os.name == "posix":
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def prune(dir: Path, kept: Path, max_bytes: int) -> int:
    """Removes the least recently used entries (`*.cwasm`, oldest modification time first) of
    `dir` until their total size is at most `max_bytes`, never `kept`; and temporary files older
    than `STALE_TEMP_AGE_S`. Returns how many entries were removed. A file another process
    removed meanwhile is skipped."""
    now = time.time()
    entries: list[tuple[float, int, Path]] = []
    total = 0
    with os.scandir(dir) as it:
        for entry in it:
            try:
                meta = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(meta.st_mode):
                continue
            name = entry.name
            if name.startswith(".") and name.endswith(".tmp"):
                if now - meta.st_mtime > STALE_TEMP_AGE_S:
                    _unlink_quietly(Path(entry.path))
                continue
            if not name.endswith(".cwasm"):
                continue
            total += meta.st_size
            if name != kept.name:
                entries.append((meta.st_mtime, meta.st_size, Path(entry.path)))
    entries.sort(key=lambda e: e[0])
    removed = 0
    for _, size, path in entries:
        if total <= max_bytes:
            break
        if _unlink_quietly(path):
            removed += 1
        total -= size
    return removed


def _unlink_quietly(path: Path) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
