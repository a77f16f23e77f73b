"""Loading the component and running calls into it with wasmtime-py 50.

One `Runtime` per component file compiles it once and holds one `Linker` whose host functions
(the `storage` and `consumer` imports) serve every instance: each call into the guest names the
`Host` (storage + consumer) it runs for in a thread-local, and the host functions dispatch to
it. Every checkpointer, driver chain and codec gets its own `Store` and instance, with the Rust
host's sandbox limits: 64 MiB of linear memory and a 10 s deadline per call (epoch
interruption, 10 ms resolution); after a trap that instance refuses every further call.

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
   bulk, and each export's `FuncType` is fetched once per runtime (`Instance.call`).
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import threading
import weakref
from dataclasses import dataclass
from importlib.metadata import version as _installed_version
from pathlib import Path
from typing import Any, Callable

import wasmtime

WASMTIME_MAJOR = "50"
if _installed_version("wasmtime").split(".")[0] != WASMTIME_MAJOR:
    raise ImportError(
        f"checkpoint needs wasmtime {WASMTIME_MAJOR}.x (its adapter is written against that "
        f"version's component API), found {_installed_version('wasmtime')}: "
        "pip install -r python/requirements.txt"
    )

from wasmtime import _ffi as ffi  # noqa: E402
from wasmtime.component import Component, Linker, ResultType, Variant  # noqa: E402

from . import _speedups, _wit  # noqa: E402
from . import types as t
from .errors import ComponentFailure, StorageError

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

ENV_COMPONENT = "CKPT_COMPONENT_WASM"


def default_component_path() -> Path:
    """`$CKPT_COMPONENT_WASM`, else the repository's `target/checkpoint.wasm`."""
    env = os.environ.get(ENV_COMPONENT)
    if env:
        return Path(env)
    # python/src/checkpoint/_runtime.py -> repository root
    return Path(__file__).resolve().parents[3] / "target" / "checkpoint.wasm"


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


_current = threading.local()


def _storage_error(e: BaseException, what: str) -> _Err:
    if isinstance(e, StorageError):
        case, message = e.case, e.message
    else:
        case, message = "failed", f"{what} raised {type(e).__name__}: {e}"
    return _Err(Variant(case, message))


def _contract(what: str, problem: str) -> _Err:
    return _Err(Variant("failed", f"{what} broke the storage contract: {problem}"))


def _host_call(what: str, body: Callable[[Host], Any], on_error: Callable[[BaseException], Any]) -> Callable[..., Any]:
    """Wraps `body` as a wasmtime host function that answers every failure as a value."""

    def func(_store: Any, *args: Any) -> Any:
        host: Host | None = getattr(_current, "host", None)
        if host is None:
            return on_error(RuntimeError(f"{what} called outside a checkpoint call"))
        try:
            return body(host, *args)
        except Exception as e:  # noqa: BLE001 - every failure becomes the WIT error value
            return on_error(e)
        except BaseException as e:  # KeyboardInterrupt, SystemExit: re-raised after the call
            host.deferred = e
            return on_error(e)

    return func


def _get(host: Host, key: str) -> Any:
    found = host.storage.get(key)
    if found is None:
        return None  # lookup.missing
    if not isinstance(found, t.Entry):
        return _contract("get", f"returned {type(found).__name__}, not Entry or None")
    if not isinstance(found.value, (bytes, bytearray, memoryview)):
        return _contract("get", f"value is {type(found.value).__name__}, not bytes")
    version = found.version
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= _wit.U64_MAX:
        return _contract("get", f"version {version!r} is not a u64 of at least 1")
    r = wasmtime.component.Record()
    r.value = bytes(found.value)
    r.version = version
    return r  # lookup.found(entry)


def _commit(host: Host, writes: list[Any]) -> Any:
    batch = _wit.lift_writes(writes)
    outcome = host.storage.commit(batch)
    if isinstance(outcome, t.Committed):
        versions = list(outcome.versions)
        if len(versions) != len(batch):
            return _contract("commit", f"{len(versions)} versions for {len(batch)} writes")
        for v, w in zip(versions, batch):
            ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _wit.U64_MAX
            if not ok or (v == 0) != isinstance(w.op, t.Delete):
                return _contract("commit", f"version {v!r} for a {type(w.op).__name__.lower()}")
        return versions  # commit-outcome.committed
    if isinstance(outcome, t.CommitConflict):
        index = outcome.index
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(batch):
            return _contract("commit", f"conflict index {index!r} outside the batch")
        return index  # commit-outcome.conflict
    return _contract("commit", f"returned {type(outcome).__name__}, not Committed or CommitConflict")


def _list_keys(host: Host, prefix: str) -> Any:
    keys = host.storage.list_keys(prefix)
    if isinstance(keys, (str, bytes)) or not all(isinstance(k, str) for k in keys):
        return _contract("list-keys", "must return strings")
    return list(keys)


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
        #: Wall time a call may run in the guest before it is interrupted (a trap).
        self.call_deadline_s = call_deadline_s
        self.deadline_ticks = max(1, math.ceil(call_deadline_s / EPOCH_TICK_S))
        if not self.path.is_file():
            raise ComponentFailure(
                f"component {self.path} not found: build it with `make build` "
                f"(or point {ENV_COMPONENT} at a checkpoint component)"
            )
        try:
            config = wasmtime.Config()
            config.epoch_interruption = True
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
            raise ComponentFailure(f"cannot load component {self.path}: {e}") from e
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


def _cause(e: Exception) -> str:
    """The last line of a wasmtime error: the trap itself (`wasm trap: ...`), not the backtrace."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__


class Instance:
    """One store with one instance of the component, serving one `Host`.

    After a trap the instance refuses every further call (`ComponentFailure`)."""

    def __init__(self, runtime: Runtime, host: Host) -> None:
        self.runtime = runtime
        self.host = host
        self.store: wasmtime.Store | None = wasmtime.Store(runtime.engine)
        self.store.set_limits(memory_size=runtime.max_memory_bytes)
        if runtime.needs_wasi:
            self.store.set_wasi(wasmtime.WasiConfig())
        self.failure: str | None = None
        self._busy = False
        self._funcs: dict[tuple[str, str], Any] = {}
        try:
            # Instantiation runs guest code too (start functions): it gets a deadline.
            self.store.set_epoch_deadline(runtime.deadline_ticks)
            self.instance = runtime.linker.instantiate(self.store, runtime.component)
        except wasmtime.WasmtimeError as e:
            raise ComponentFailure(f"cannot instantiate component {runtime.path}: {e}") from e

    def call(self, interface: str, name: str, *args: Any) -> Any:
        """Calls an export; a trap poisons this instance and raises `ComponentFailure`."""
        if self.store is None:
            raise ComponentFailure("this instance was closed; open a new one")
        if self.failure is not None:
            raise ComponentFailure(
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
        try:
            self.store.set_epoch_deadline(self.runtime.deadline_ticks)
            return func(self.store, *args)
        except wasmtime.WasmtimeError as e:
            cause = _cause(e)
            if "interrupt" in cause:
                cause = f"ran past its deadline of {self.runtime.call_deadline_s:g}s ({cause})"
            self.failure = f"{name}: {cause}"
            raise ComponentFailure(f"{name} did not complete: {cause}\n{e}") from e
        finally:
            self._busy = False
            _current.host = previous
            deferred, self.host.deferred = self.host.deferred, None
            if deferred is not None:
                raise deferred

    def close(self) -> None:
        """Drops the store at once: no guest code runs, nothing is flushed."""
        if self._busy:
            raise ComponentFailure("cannot close a checkpointer from inside one of its calls")
        self._funcs.clear()
        self.instance = None  # type: ignore[assignment]
        self.store = None
