"""Loading the component and running calls into it with wasmtime-py 50.

One `Runtime` per component file compiles it once and holds one `Linker` whose host functions
(the `storage` and `consumer` imports) serve every instance: each call into the guest names the
`Host` (storage + consumer) it runs for in a thread-local, and the host functions dispatch to
it. Every checkpointer, driver chain and codec gets its own `Store` and instance, with the Rust
host's sandbox (`Runtime(max_memory_bytes=, call_deadline_s=)`), and the Rust host's error kinds
(`Deadline`, `MemoryLimit`, `Trap`, `Unusable`, with the same texts):

- The deadline (10 s per call): epoch interruption inside the guest (10 ms resolution), and a
  wall-clock check when each store or consumer callback returns, so time spent in a callback
  counts even when the guest would return without reaching another epoch check, or when the
  callback held the GIL so long that the epoch ticker could not run. A late answer never reaches
  the guest: the host function raises instead, which traps the call.
- The memory limit (64 MiB of linear memory per instance): on Linux this host makes the
  instances' linear memories itself (wasmtime's host memory creator, `_MemoryCreator`): growth
  past the limit is refused and remembered, so the trap that usually follows (Rust aborts) is
  named after the limit, with the sizes, as the Rust host's ResourceLimiter does. Elsewhere
  wasmtime's store limiter refuses the growth, and the trap is reported as a plain `Trap`.
- After any failure that instance refuses every further call (`Unusable`); the runtime and
  every other instance keep serving.

Host limits of wasmtime-py 50 handled here (the adapter relies on wasmtime-py's internals in
places, so it refuses to load with any other major version):

1. A host function that raises leaves the instance unusable ("cannot enter component
   instance"). So no exception ever leaves a host function: every failure of a user store or
   consumer, including a wrong return type, becomes the WIT error value for that call.
2. A host function cannot return `err` through `result<lookup, storage-error>`: `lookup` has a
   payload-less case, so wasmtime-py lowers it "untagged" with `object` among its classes, and
   every value (an error too) is taken for `ok`; the error then fails to lower as a `lookup`
   and the call traps. `_install_err_lowering` teaches `ResultType` one explicit marker,
   `_Err(payload)`, which always lowers as `err`; every other value lowers exactly as before.
3. An int out of range would be wrapped silently by ctypes: `_wit` checks every int first.
4. Value conversion is generic and slow (the type is walked through the C API on every call,
   `list<u8>` one byte at a time): `_speedups` caches type introspection, converts bytes in
   bulk, and each export's `FuncType` is fetched once per runtime (`Instance.call`). What
   stays is wasmtime's C API itself: every byte of a `list<u8>` is a 32-byte C value and a
   Rust `Val`, both ways, so large state moves at about 5 MB/s with about 160 bytes of
   transient memory per byte (python/bench.py `large-state` rows); no public C API moves bytes.
5. Every value a guest hands the host (a host function's arguments, an export's results) is
   lifted into wasmtime's generic `Val`, 48 bytes per list element, and wasmtime charges that
   against its per-call "hostcall fuel", 128 MiB by default: a `list<u8>` over about 2.6 MiB
   traps ("fuel allocated for hostcalls has been exhausted"). Neither wasmtime-py 50 nor its C
   API can set it (`Store::set_hostcall_fuel` is Rust-only), so `_HostcallFuel` finds the
   field in a store once per process, proves it is that one (8 units of it must make a
   51-byte answer trap), and raises it in every store to `Runtime.hostcall_fuel`: enough for
   everything the instance's memory can hold, as in the Rust host. Where it cannot be found
   (another C library, a changed layout) nothing is written and the default stays.

The storage contract (`wit/storage.wit`) is checked by the component itself: a store's answer
that breaks it comes back as the `broken-store` error, the same in every host. The adapter only
converts answers, and reports one the WIT types cannot carry (not bytes, not an int in range)
as a `failed` storage error. The text of every error is the component's (`codec.describe`).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import importlib.resources
import math
import os
import platform
import re
import threading
import time
import weakref
from dataclasses import dataclass
from importlib.metadata import version as _installed_version
from pathlib import Path
from typing import Any, Callable

import wasmtime

WASMTIME_MAJOR = "50"
if _installed_version("wasmtime").split(".")[0] != WASMTIME_MAJOR:
    raise ImportError(
        f"pipeline_checkpoint needs wasmtime {WASMTIME_MAJOR}.x (its adapter is written against "
        f"that version's component API), found {_installed_version('wasmtime')}: "
        f"pip install 'wasmtime>={WASMTIME_MAJOR},<{int(WASMTIME_MAJOR) + 1}'"
    )

from wasmtime import _ffi as ffi  # noqa: E402
from wasmtime.component import Component, Linker, ResultType, Variant  # noqa: E402

from . import _speedups, _wit  # noqa: E402
from . import types as t
from .errors import (
    CheckpointError,
    ComponentFailure,
    Deadline,
    MemoryLimit,
    StorageError,
    Trap,
    Unusable,
)

PACKAGE = "pipeline:checkpoint"
VERSION = "0.1.0"
STORAGE = f"{PACKAGE}/storage@{VERSION}"
CONSUMER = f"{PACKAGE}/consumer@{VERSION}"
TYPES = f"{PACKAGE}/types@{VERSION}"
CHECKPOINTER = f"{PACKAGE}/checkpointer@{VERSION}"
CODEC = f"{PACKAGE}/codec@{VERSION}"

#: Linear memory one instance may grow to, as in the Rust host's `RuntimeConfig`.
MAX_MEMORY_BYTES = 64 << 20
#: Wall time one call into the guest may take, as in the Rust host's `RuntimeConfig`.
CALL_DEADLINE_S = 10.0
#: How often the engines' epoch advances: the resolution of the deadline.
EPOCH_TICK_S = 0.01

#: The component's file name inside this package (the wheel build puts it there).
COMPONENT_RESOURCE = "checkpoint.wasm"

# Holds the component on disk for the life of the process when the package is imported from
# an archive (importlib.resources extracts it to a temporary file); a no-op otherwise.
_resource_files = contextlib.ExitStack()
atexit.register(_resource_files.close)


@functools.lru_cache(maxsize=None)
def default_component_path() -> Path:
    """The component shipped inside this package: `pipeline_checkpoint/checkpoint.wasm`.

    Only this file is the default: no environment variable and no repository path is consulted.
    Pass a path (or a `Runtime`) explicitly to run another component."""
    resource = importlib.resources.files(__package__) / COMPONENT_RESOURCE
    if not resource.is_file():
        raise ComponentFailure(
            f"the component {COMPONENT_RESOURCE} is missing from the installed package "
            f"({resource}): install a wheel built by python/dist.sh, which puts it there"
        )
    return _resource_files.enter_context(importlib.resources.as_file(resource))


# --------------------------------------------------------------------------------------------
# limit 2: an explicit `err` for results wasmtime-py lowers untagged


@dataclass(frozen=True)
class _Err:
    """A host function's `err` answer; lowered as `err` whatever the `ok` type is."""

    payload: Any


def _install_err_lowering() -> None:
    if getattr(ResultType.convert_to_c, "_ckpt_err_lowering", False):
        return
    original = ResultType.convert_to_c

    def convert_to_c(self: ResultType, store: Any, val: Any, ptr: Any) -> None:
        if not isinstance(val, _Err):
            original(self, store, val, ptr)
            return
        err_ty = self.err
        raw_ptr = None
        if err_ty is not None:
            raw = ffi.wasmtime_component_val_t()
            err_ty.convert_to_c(store, val.payload, ctypes.pointer(raw))
            raw_ptr = ffi.wasmtime_component_val_new(ctypes.byref(raw))
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_RESULT
        ptr.contents.of.result.is_ok = False
        ptr.contents.of.result.val = raw_ptr

    convert_to_c._ckpt_err_lowering = True  # type: ignore[attr-defined]
    ResultType.convert_to_c = convert_to_c  # type: ignore[method-assign]


_install_err_lowering()
_speedups.install()

# --------------------------------------------------------------------------------------------
# limit 1: host functions that never raise


class Host:
    """What one instance's imports call: a storage and a consumer."""

    def __init__(self, storage: Any, consumer: Any) -> None:
        self.storage = storage
        self.consumer = consumer
        # A KeyboardInterrupt or SystemExit inside a host function cannot cross the guest; it
        # is kept here and raised again once the guest call returns.
        self.deferred: BaseException | None = None
        #: `time.monotonic()` by which the call in progress must end (None outside a call).
        self.deadline: float | None = None


class _DeadlinePassed(Exception):
    """Raised by a host function whose callback returned after the call's deadline: a trap
    (the instance is unusable after it anyway), recognised by `Instance.call`."""

    def __init__(self, what: str) -> None:
        super().__init__(f"the host call `{what}` returned after the deadline")


_current = threading.local()


def _storage_error(e: BaseException, what: str) -> _Err:
    if isinstance(e, StorageError):
        case, message = e.case, e.message
    else:
        case, message = "failed", f"{what} raised {type(e).__name__}: {e}"
    return _Err(Variant(case, message))


def _unconvertible(what: str, problem: str) -> _Err:
    # Not a breach the component can judge: the WIT types cannot carry this answer at all.
    message = f"{what}: the store's answer cannot be passed to the component: {problem}"
    return _Err(Variant("failed", message))


def _is_int(value: Any, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high


def _host_call(what: str, body: Callable[[Host], Any], on_error: Callable[[BaseException], Any]) -> Callable[..., Any]:
    """Wraps `body` as a wasmtime host function that answers every failure as a value."""

    def func(_store: Any, *args: Any) -> Any:
        host: Host | None = getattr(_current, "host", None)
        if host is None:
            return on_error(RuntimeError(f"{what} called outside a checkpoint call"))
        try:
            answer = body(host, *args)
        except Exception as e:  # noqa: BLE001 - every failure becomes the WIT error value
            answer = on_error(e)
        except BaseException as e:  # KeyboardInterrupt, SystemExit: re-raised after the call
            host.deferred = e
            answer = on_error(e)
        # Time in the callback counts: a late answer is not handed to the guest (the epoch
        # deadline alone fires only if the guest reaches another check before it returns).
        if host.deadline is not None and time.monotonic() > host.deadline:
            raise _DeadlinePassed(what)
        return answer

    return func


# The three storage functions pass the store's answers on unchanged: the component checks them
# against the contract (`broken-store`). They only convert, and refuse what cannot be converted.


def _get(host: Host, key: str) -> Any:
    found = host.storage.get(key)
    if found is None:
        return None  # lookup.missing
    if not isinstance(found, t.Entry):
        return _unconvertible("get", f"returned {type(found).__name__}, not Entry or None")
    if not isinstance(found.value, (bytes, bytearray, memoryview)):
        return _unconvertible("get", f"the value is {type(found.value).__name__}, not bytes")
    if not _is_int(found.version, _wit.U64_MAX):
        return _unconvertible("get", f"the version {found.version!r} is not a u64")
    r = wasmtime.component.Record()
    r.value = bytes(found.value)
    r.version = found.version
    return r  # lookup.found(entry)


def _commit(host: Host, writes: list[Any]) -> Any:
    outcome = host.storage.commit(_wit.lift_writes(writes))
    if isinstance(outcome, t.Committed):
        versions = list(outcome.versions)
        for v in versions:
            if not _is_int(v, _wit.U64_MAX):
                return _unconvertible("commit", f"the version {v!r} is not a u64")
        return versions  # commit-outcome.committed
    if isinstance(outcome, t.CommitConflict):
        if not _is_int(outcome.index, _wit.U32_MAX):
            return _unconvertible("commit", f"the conflict index {outcome.index!r} is not a u32")
        return outcome.index  # commit-outcome.conflict
    return _unconvertible(
        "commit", f"returned {type(outcome).__name__}, not Committed or CommitConflict"
    )


def _list_keys(host: Host, prefix: str) -> Any:
    keys = host.storage.list_keys(prefix)
    if isinstance(keys, (str, bytes)):
        return _unconvertible("list-keys", f"returned {type(keys).__name__}, not a list of str")
    keys = list(keys)
    for k in keys:
        if not isinstance(k, str):
            return _unconvertible("list-keys", f"the key {k!r} is not a str")
        try:
            k.encode("utf-8")
        except UnicodeEncodeError:
            return _unconvertible("list-keys", f"the key {k!r} is not valid Unicode")
    return keys


def _ack(host: Host, ids: list[str]) -> Any:
    host.consumer.ack(list(ids))
    return None


def _ack_error(e: BaseException) -> _Err:
    return _Err(str(e) or type(e).__name__)


def _define_imports(linker: Linker) -> None:
    with linker.root() as root:
        with root.add_instance(STORAGE) as storage:
            for name, body in (("get", _get), ("commit", _commit), ("list-keys", _list_keys)):
                on_error = functools.partial(_storage_error, what=name)
                _speedups.add_host_func(storage, name, _host_call(name, body, on_error))
        with root.add_instance(CONSUMER) as consumer:
            _speedups.add_host_func(consumer, "ack", _host_call("ack", _ack, _ack_error))
        # `types` has no functions, but the component imports the interface by name.
        with root.add_instance(TYPES):
            pass


# --------------------------------------------------------------------------------------------
# the call deadline: one daemon thread advances the epoch of every live engine


class _EpochTicker:
    def __init__(self) -> None:
        self._engines: "weakref.WeakSet[wasmtime.Engine]" = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, engine: wasmtime.Engine) -> None:
        with self._lock:
            self._engines.add(engine)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="checkpoint-epoch-ticker", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            threading.Event().wait(EPOCH_TICK_S)
            with self._lock:
                engines = list(self._engines)
            for engine in engines:
                engine.increment_epoch()


_TICKER = _EpochTicker()


def format_duration(seconds: float) -> str:
    """Rust's `Debug` of a `Duration` (`200ms`, `10s`, `1.5s`): texts match the Rust host's."""
    nanos = round(seconds * 1e9)

    def decimal(whole: int, fraction: int, divisor: int) -> str:
        digits = ""
        while fraction > 0 and divisor >= 1:
            digits += str(fraction // divisor)
            fraction %= divisor
            divisor //= 10
        return f"{whole}.{digits}" if digits else str(whole)

    if nanos >= 10**9:
        return decimal(nanos // 10**9, nanos % 10**9, 10**8) + "s"
    if nanos >= 10**6:
        return decimal(nanos // 10**6, nanos % 10**6, 10**5) + "ms"
    if nanos >= 10**3:
        return decimal(nanos // 10**3, nanos % 10**3, 100) + "µs"
    return f"{nanos}ns"


def _wit_name(interface: str, name: str) -> str:
    """The function's name as the Rust host words it: `checkpointer.get`, `codec.validate`."""
    bare = re.sub(r"^\[[a-z-]+\]", "", name)
    if "." in bare:
        return bare
    return f"{interface.rsplit('/', 1)[-1].split('@', 1)[0]}.{bare}"


# --------------------------------------------------------------------------------------------
# the memory limit: linear memories made by this host (wasmtime's host memory creator), which
# refuse growth past the limit and remember it


class _LinearMemory:
    """One linear memory: `capacity` bytes reserved (wasmtime's reservation, never moved) plus
    the guard, of which the first `size` bytes are readable and writable."""

    __slots__ = ("base", "size", "capacity", "length", "limit", "refused")

    def __init__(self, base: int, size: int, capacity: int, length: int, limit: int) -> None:
        self.base = base
        self.size = size
        self.capacity = capacity
        self.length = length
        self.limit = limit
        #: (current, desired) size in bytes of the last growth refused in the current call.
        self.refused: tuple[int, int] | None = None


_PROT_NONE, _PROT_RW = 0, 3
_MAP_PRIVATE, _MAP_ANONYMOUS, _MAP_NORESERVE = 0x02, 0x20, 0x4000
_MAP_FAILED = ctypes.c_void_p(-1).value

#: Every live memory this host made, by the key wasmtime hands back to the callbacks.
_MEMORIES: dict[int, _LinearMemory] = {}
_memories_lock = threading.Lock()
_memory_keys = iter(range(1, 1 << 62))
#: The `Instance` being instantiated on this thread: its memories are recorded on it.
_instantiating = threading.local()


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long
    ]
    libc.mprotect.restype = ctypes.c_int
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


_LIBC = _libc() if platform.system() == "Linux" else None


def _error(message: str) -> int:
    """A `wasmtime_error_t *` (as an address) for a callback to return."""
    error = ffi.wasmtime_error_new(message.encode("utf-8", "replace"))
    return ctypes.cast(error, ctypes.c_void_p).value or 0


def _os_error(what: str) -> str:
    errno = ctypes.get_errno()
    return f"{what} failed: {os.strerror(errno)} (errno {errno})"


@ffi.wasmtime_memory_get_callback_t
def _memory_get(key: Any, byte_size: Any, maximum_byte_size: Any) -> int:
    memory = _MEMORIES[key]
    byte_size[0] = memory.size
    maximum_byte_size[0] = memory.capacity
    return memory.base


@ffi.wasmtime_memory_grow_callback_t
def _memory_grow(key: Any, new_size: int) -> int:
    try:
        memory = _MEMORIES[key]
        if new_size > memory.limit:
            memory.refused = (memory.size, new_size)
            return _error(
                f"the memory limit of {memory.limit} bytes refuses to grow the memory from "
                f"{memory.size} to {new_size} bytes"
            )
        if new_size > memory.capacity:
            return _error(f"cannot grow the memory past its reservation of {memory.capacity} bytes")
        if new_size > memory.size:
            assert _LIBC is not None
            if _LIBC.mprotect(memory.base + memory.size, new_size - memory.size, _PROT_RW) != 0:
                return _error(_os_error("mprotect"))
            memory.size = new_size
        return 0
    except BaseException as e:  # noqa: BLE001 - nothing may unwind into wasmtime
        return _error(f"growing the memory failed: {type(e).__name__}: {e}")


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _memory_free(key: Any) -> None:
    with _memories_lock:
        memory = _MEMORIES.pop(key, None)
    if memory is not None and _LIBC is not None:
        _LIBC.munmap(memory.base, memory.length)


class _MemoryCreator:
    """Makes the linear memories of one engine's instances, capped at `limit` bytes each. The
    guest sees an ordinary linear memory, laid out as wasmtime's own: its reservation and guard
    are mapped inaccessible and only the current size is readable and writable. Growth past
    the limit fails (`memory.grow` returns -1) and is recorded on the memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._callback = ffi.wasmtime_new_memory_callback_t(self._new_memory)
        self._finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _env: None)

    def install(self, config: wasmtime.Config) -> None:
        creator = ffi.wasmtime_memory_creator_t()
        creator.env = None
        creator.new_memory = self._callback
        creator.finalizer = self._finalizer
        ffi.wasmtime_config_host_memory_creator_set(config.ptr(), ctypes.byref(creator))

    def _new_memory(
        self, _env: Any, _ty: Any, minimum: int, _maximum: int, reserved: int, guard: int, out: Any
    ) -> int:
        try:
            if minimum > self.limit:
                return _error(
                    f"the memory limit of {self.limit} bytes refuses an initial memory of "
                    f"{minimum} bytes"
                )
            assert _LIBC is not None
            capacity = reserved or max(self.limit, minimum)
            length = capacity + guard
            flags = _MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_NORESERVE
            base = _LIBC.mmap(None, length, _PROT_NONE, flags, -1, 0)
            if base is None or base == _MAP_FAILED:
                return _error(_os_error("mmap"))
            if minimum and _LIBC.mprotect(base, minimum, _PROT_RW) != 0:
                message = _os_error("mprotect")
                _LIBC.munmap(base, length)
                return _error(message)
            memory = _LinearMemory(base, minimum, capacity, length, self.limit)
            with _memories_lock:
                key = next(_memory_keys)
                _MEMORIES[key] = memory
            owner = getattr(_instantiating, "instance", None)
            if owner is not None:
                owner.memories.append(memory)
            out[0].env = key
            out[0].get_memory = _memory_get
            out[0].grow_memory = _memory_grow
            out[0].finalizer = _memory_free
            return 0
        except BaseException as e:  # noqa: BLE001 - nothing may unwind into wasmtime
            return _error(f"creating a linear memory failed: {type(e).__name__}: {e}")

# --------------------------------------------------------------------------------------------
# runtime and instances


class Runtime:
    """A compiled component and the linker that serves its imports. Compile once per process
    (`Runtime.shared()`), instantiate per checkpointer."""

    _shared: dict[Path, "Runtime"] = {}
    _shared_lock = threading.Lock()

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_memory_bytes: int = MAX_MEMORY_BYTES,
        call_deadline_s: float = CALL_DEADLINE_S,
    ) -> None:
        self.path = Path(path) if path is not None else default_component_path()
        #: Linear memory each instance may grow to; growth beyond it fails and the guest traps.
        self.max_memory_bytes = max_memory_bytes
        #: Hostcall fuel of each instance's store (host limit 5): enough to lift a `list<u8>` as
        #: large as the instance's whole memory, and never below wasmtime's default. Applied
        #: where `hostcall_fuel_settable()`.
        self.hostcall_fuel = max(_DEFAULT_HOSTCALL_FUEL, max_memory_bytes * _VAL_BYTES)
        #: Wall time a call may run in the guest before it is interrupted (a trap).
        self.call_deadline_s = call_deadline_s
        self.deadline_ticks = max(1, math.ceil(call_deadline_s / EPOCH_TICK_S))
        if not self.path.is_file():
            raise ComponentFailure(f"component {self.path} not found", kind="Load")
        try:
            config = wasmtime.Config()
            config.epoch_interruption = True
            #: Makes the linear memories, enforcing the limit (None: wasmtime's store limiter).
            self.memory_creator = _MemoryCreator(max_memory_bytes) if _LIBC is not None else None
            if self.memory_creator is not None:
                # Copy-on-write memory images need wasmtime's own mmap-based memories.
                config.memory_init_cow = False
                self.memory_creator.install(config)
            self.engine = wasmtime.Engine(config)
            self.component = Component.from_file(self.engine, str(self.path))
            self.linker = Linker(self.engine)
            # The checkpoint component imports no WASI; a component that does (a std build
            # with WASI imports, the hostile test guest) gets it with no authority at all: no
            # preopened directory, no environment, arguments or stdio.
            imports = self.component.type.imports(self.engine)
            self.needs_wasi = any(name.startswith("wasi:") for name in imports)
            if self.needs_wasi:
                self.linker.add_wasip2()
            _define_imports(self.linker)
        except wasmtime.WasmtimeError as e:
            raise ComponentFailure(f"cannot load component {self.path}: {e}", kind="Load") from e
        _TICKER.add(self.engine)
        self._indexes: dict[tuple[str, str], Any] = {}
        self._func_types: dict[tuple[str, str], Any] = {}

    @classmethod
    def shared(cls, path: str | os.PathLike[str] | None = None) -> "Runtime":
        """The process-wide runtime for `path` (default: `default_component_path()`)."""
        key = (Path(path) if path is not None else default_component_path()).resolve()
        with cls._shared_lock:
            runtime = cls._shared.get(key)
            if runtime is None:
                runtime = cls._shared[key] = cls(key)
            return runtime

    def export_index(self, interface: str, name: str) -> Any:
        """The component-level index of one export (valid in every instance)."""
        key = (interface, name)
        index = self._indexes.get(key)
        if index is None:
            iface = self.component.get_export_index(interface)
            index = self.component.get_export_index(name, iface) if iface is not None else None
            if index is None:
                raise ComponentFailure(f"component {self.path} does not export {interface} {name}")
            self._indexes[key] = index
        return index

    def instantiate(self, host: Host) -> "Instance":
        return Instance(self, host)

    def exports(self, interface: str, name: str) -> bool:
        """Whether the component exports `name` from `interface`."""
        try:
            self.export_index(interface, name)
        except ComponentFailure:
            return False
        return True


def _cause(e: Exception) -> str:
    """The last line of a wasmtime error: the trap itself (`wasm trap: ...`), not the backtrace."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__


class Instance:
    """One store with one instance of the component, serving one `Host`.

    After any failure the instance refuses every further call (`Unusable`)."""

    def __init__(self, runtime: Runtime, host: Host, *, raise_hostcall_fuel: bool = True) -> None:
        self.runtime = runtime
        self.host = host
        self.store: wasmtime.Store | None = wasmtime.Store(runtime.engine)
        if runtime.memory_creator is None:
            self.store.set_limits(memory_size=runtime.max_memory_bytes)
        if runtime.needs_wasi:
            self.store.set_wasi(wasmtime.WasiConfig())
        #: Why this instance refuses calls (the first sentence of its failure), once it does.
        self.failure: str | None = None
        #: The linear memories `runtime.memory_creator` made for this instance.
        self.memories: list[_LinearMemory] = []
        self._busy = False
        self._funcs: dict[tuple[str, str], Any] = {}
        if raise_hostcall_fuel:
            _HOSTCALL_FUEL.apply(self)
        _instantiating.instance = self
        try:
            # Instantiation runs guest code too (start functions): it gets a deadline.
            self.store.set_epoch_deadline(runtime.deadline_ticks)
            self.instance = runtime.linker.instantiate(self.store, runtime.component)
        except wasmtime.WasmtimeError as e:
            raise ComponentFailure(
                f"cannot instantiate component {runtime.path}: {e}", kind="Instantiate"
            ) from e
        finally:
            _instantiating.instance = None

    def call(self, interface: str, name: str, *args: Any) -> Any:
        """Calls an export under the deadline. A call that does not complete raises `Deadline`,
        `MemoryLimit` or `Trap`, and the instance answers `Unusable` from then on."""
        if self.store is None:
            raise ComponentFailure("this instance was closed; open a new one")
        if self.failure is not None:
            raise Unusable(
                f"cannot call `{_wit_name(interface, name)}`: this instance of the component is "
                f"unusable after an earlier failure ({self.failure}); open a new one"
            )
        if self._busy:
            # A store or consumer calling back into the checkpointer it serves: wasmtime would
            # refuse to re-enter the instance, and this instance would be marked failed.
            raise ComponentFailure(
                f"{name}: re-entrant call from a store or consumer into its own checkpointer"
            )
        func = self._funcs.get((interface, name))
        if func is None:
            func = self.instance.get_func(self.store, self.runtime.export_index(interface, name))
            # One FuncType per export for the whole runtime (limit 4): `Func.__call__` asks
            # for it on every call, and every instance of the component has the same types.
            fty = self.runtime._func_types.get((interface, name))
            if fty is None:
                fty = self.runtime._func_types[(interface, name)] = func.type(self.store)
            func.type = lambda _store, _fty=fty: _fty
            self._funcs[(interface, name)] = func
        previous = getattr(_current, "host", None)
        _current.host = self.host
        self._busy = True
        for memory in self.memories:
            memory.refused = None
        try:
            self.host.deadline = time.monotonic() + self.runtime.call_deadline_s
            self.store.set_epoch_deadline(self.runtime.deadline_ticks)
            return func(self.store, *args)
        except _DeadlinePassed as e:
            raise self._failed(_wit_name(interface, name), Deadline, str(e), "") from e
        except wasmtime.WasmtimeError as e:
            wit_name = _wit_name(interface, name)
            cause = _cause(e)
            refused = [m.refused for m in self.memories if m.refused is not None]
            if "interrupt" in cause:
                raise self._failed(wit_name, Deadline, cause, str(e)) from e
            if refused:
                raise self._failed(wit_name, MemoryLimit, cause, str(e), refused[-1]) from e
            if _FUEL_EXHAUSTED in cause and _HOSTCALL_FUEL.offset is None:
                why = _HOSTCALL_FUEL.problem or "not looked for"
                cause += (
                    " (wasmtime-py 50 caps the data one call hands the host at about 2.6 MiB of"
                    f" bytes, and this process cannot raise that: {why})"
                )
            raise self._failed(wit_name, Trap, cause, str(e)) from e
        finally:
            self.host.deadline = None
            self._busy = False
            _current.host = previous
            deferred, self.host.deferred = self.host.deferred, None
            if deferred is not None:
                raise deferred

    def _failed(
        self,
        wit_name: str,
        kind: type[ComponentFailure],
        cause: str,
        details: str,
        refused: tuple[int, int] | None = None,
    ) -> ComponentFailure:
        """The error for a call that did not complete, worded as the Rust host words it; from
        now on the instance refuses calls, naming `context`."""
        if kind is Deadline:
            context = (
                f"the component call `{wit_name}` ran past its deadline of "
                f"{format_duration(self.runtime.call_deadline_s)} and was interrupted"
            )
        elif kind is MemoryLimit:
            assert refused is not None
            context = (
                f"the component call `{wit_name}` trapped after its memory limit of "
                f"{self.runtime.max_memory_bytes} bytes refused to grow its memory from "
                f"{refused[0]} to {refused[1]} bytes"
            )
        else:
            context = f"the component call `{wit_name}` trapped"
        self.failure = context
        return kind(f"{context}: {cause}" + (f"\n{details}" if details else ""))

    def drop_resource(self, handle: Any) -> None:
        """Drops a resource handle of this instance. Its destructor is guest code, so it runs
        under a fresh deadline like a call: the epoch deadline of the last call has long passed
        once the instance has been idle for longer than `call_deadline_s`."""
        if self.store is None:
            raise ComponentFailure("this instance was closed; open a new one")
        self.store.set_epoch_deadline(self.runtime.deadline_ticks)
        handle.drop(self.store)

    def call_result(self, interface: str, name: str, *args: Any) -> Any:
        """Calls an export that returns `result<T, error>`: the `ok` payload, or raises the
        `error` as its `CheckpointError`, whose text this instance describes."""
        return _wit.unwrap(self.call(interface, name, *args), self.describe)

    def describe(self, error: Any) -> str:
        """The component's one line about a WIT `error` value (`codec.describe`), asked of
        this instance right after the call that answered it."""
        if not self.runtime.exports(CODEC, "describe"):
            return _undescribed(error)
        return self.call(CODEC, "describe", error)

    def context_address(self) -> int:
        """Where wasmtime keeps this instance's store (its `wasmtime_context_t`)."""
        if self.store is None:
            raise ComponentFailure("this instance was closed; open a new one")
        return ctypes.cast(self.store._context(), ctypes.c_void_p).value or 0

    def close(self) -> None:
        """Drops the store at once: no guest code runs, nothing is flushed."""
        if self._busy:
            raise ComponentFailure("cannot close a checkpointer from inside one of its calls")
        self._funcs.clear()
        self.instance = None  # type: ignore[assignment]
        self.store = None


def _undescribed(error: Any) -> str:
    """The text of an error from a component without `codec.describe` (a test component)."""
    if isinstance(error, Variant):
        return f"{error.tag}: {error.payload!r} (this component has no codec.describe)"
    return f"{error!r} (this component has no codec.describe)"


# --------------------------------------------------------------------------------------------
# the text of an error made outside a call (by hand, or by the adapter's range checks)

_describer_lock = threading.Lock()
_describer: Instance | None = None


def describe_error(error: CheckpointError) -> str:
    """The component's description of `error` (`codec.describe`), from one instance of the
    shared runtime kept for this. For an exception made by hand, or by the adapter for a value
    the WIT cannot carry; an answer of a call is described by the instance that gave it."""
    global _describer
    try:
        value = _wit.lower_error(error)
    except ValueError as e:
        return f"{error.case or type(error).__name__}: {vars(error)!r} ({e})"
    with _describer_lock:
        try:
            if _describer is None or _describer.failure is not None:
                _describer = Runtime.shared().instantiate(Host(None, None))
            return _describer.describe(value)
        except (ComponentFailure, wasmtime.WasmtimeError) as e:
            return f"{_undescribed(value)}; describing it failed: {e}"


# --------------------------------------------------------------------------------------------
# limit 5: hostcall fuel

#: wasmtime's default hostcall fuel per call (`Store::set_hostcall_fuel`).
_DEFAULT_HOSTCALL_FUEL = 128 << 20
#: Hostcall fuel one lifted list element costs through the C API: the size of wasmtime's `Val`.
_VAL_BYTES = 48
_FUEL_EXHAUSTED = "fuel allocated for hostcalls has been exhausted"


class _HostcallFuel:
    """Where wasmtime keeps a store's hostcall fuel, found once per process (see limit 5)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.offset: int | None = None
        #: Why the field was not found; None while it has not been looked for, or once found.
        self.problem: str | None = None
        self._probed = False

    def apply(self, instance: Instance) -> None:
        """Raises `instance`'s hostcall fuel to its runtime's `hostcall_fuel`, if the field is
        known (looking for it first, once per process)."""
        with self._lock:
            if not self._probed and instance.runtime.exports(CODEC, "describe"):
                self._probed = True
                self.offset, self.problem = _find_hostcall_fuel(instance.runtime)
        if self.offset is None:
            return
        cell = ctypes.c_size_t.from_address(instance.context_address() + self.offset)
        # Every new store starts at the default: anything else is not the field found.
        if cell.value == _DEFAULT_HOSTCALL_FUEL:
            cell.value = instance.runtime.hostcall_fuel


_HOSTCALL_FUEL = _HostcallFuel()


def hostcall_fuel_settable() -> bool:
    """Whether this process raises each store's hostcall fuel (host limit 5); known once an
    instance of a component with `codec.describe` was made. `hostcall_fuel_problem()` says
    why not."""
    return _HOSTCALL_FUEL.offset is not None


def hostcall_fuel_problem() -> str | None:
    """Why the hostcall fuel cannot be raised in this process, if it cannot."""
    return _HOSTCALL_FUEL.problem


def _find_hostcall_fuel(runtime: Runtime) -> tuple[int | None, str | None]:
    """The offset of the hostcall fuel in a store's context, or None and why not.

    The context is the start of one heap block (wasmtime's `StoreInner`); the one word in it
    that holds the default fuel is the candidate, and it is proven by its effect: with 8 units,
    describing `not-found` (a 51-byte string back to the host) must run out of hostcall fuel.
    Only the probe's own store is written to."""
    if ctypes.sizeof(ctypes.c_size_t) != 8:
        return None, "not a 64-bit platform"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None, "only looked for with glibc on Linux (malloc_usable_size bounds the search)"
    try:
        usable_size = ctypes.CDLL(None).malloc_usable_size
    except (OSError, AttributeError) as e:
        return None, f"malloc_usable_size is unavailable: {e}"
    usable_size.restype = ctypes.c_size_t
    usable_size.argtypes = [ctypes.c_void_p]
    probe = Instance(runtime, Host(None, None), raise_hostcall_fuel=False)
    base = probe.context_address()
    size = usable_size(base)
    if not 8 <= size <= 1 << 20:
        return None, f"the store's block has an unexpected size ({size} bytes)"
    words = (ctypes.c_size_t * (size // 8)).from_address(base)
    found = [i * 8 for i, word in enumerate(words) if word == _DEFAULT_HOSTCALL_FUEL]
    if len(found) != 1:
        return None, f"{len(found)} words of the store hold the default fuel, not 1"
    ctypes.c_size_t.from_address(base + found[0]).value = 8
    try:
        probe.describe(Variant("not-found"))
    except ComponentFailure as e:
        if _FUEL_EXHAUSTED in str(e):
            return found[0], None
        return None, f"the probe failed otherwise: {_cause(e)}"
    finally:
        probe.close()  # the probe's store is dropped, never reused
    return None, "the candidate word does not limit hostcall data"
