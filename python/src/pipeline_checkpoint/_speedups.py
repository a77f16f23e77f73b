"""Speed-ups for wasmtime-py 50's generic value conversion (host limit 4, see `_runtime`).

wasmtime-py converts every value by walking its type through the C API on every call: a
record asks for its fields, a variant for its cases (and recomputes whether it is "tagged"),
a `list<u8>` converts one byte at a time into a 32-byte `wasmtime_component_val_t`. For this
component that made a `write` cost about 1 ms. Three local changes, none altering what a value
converts to:

1. Type introspection (`RecordType.fields`, `VariantType.cases`, `ListType.element`,
   `OptionType.payload`, `ResultType.ok/err`, `_tagged`) is computed once per type object.
2. `list<u8>` is converted in bulk: the array of `val_t` is written or read in place with two
   strided memoryview copies instead of one Python call per byte (no intermediate buffer of
   32 bytes per byte, which mattered for multi-MiB operator states).
3. Function types are fetched once: `Instance` (in `_runtime`) keeps one `FuncType` per export,
   and host functions are registered with `add_host_func`, which keeps the parameter and result
   types of each import instead of rebuilding them from the C API on every callback.
4. Names and strings cross with one copy: `ffi.to_str` reads a C string with `string_at`
   instead of building a new ctypes array type and a bytearray per string, `ffi.bytes_to_capi`
   copies straight into the new C vector, and a record lifted from C takes its fields in the
   type's order without decoding each field's name only to assert it (wasmtime gives record
   fields in type order). A `get` lifts 13 record fields and 3 strings.

Installed once, on import of `_runtime`, which refuses any wasmtime but 50.x.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable

from wasmtime import _ffi as ffi
from wasmtime import StoreContext
from wasmtime.component import FuncType, ListType, OptionType, RecordType, ResultType, VariantType
from wasmtime.component._enter import catch_exceptions
from wasmtime.component._linker import FUNCTIONS, LinkerInstance, func_finalize
from wasmtime.component._types import Record, VariantLikeType

_VAL_SIZE = ctypes.sizeof(ffi.wasmtime_component_val_t)
_VAL_OF = ffi.wasmtime_component_val_t.of.offset
_U8_KIND = ffi.WASMTIME_COMPONENT_U8.value
_MARK = "_ckpt_speedups"


def _cached_property(cls: type, name: str) -> None:
    prop = cls.__dict__[name]
    fget: Callable[[Any], Any] = prop.fget
    slot = f"_ckpt_{name}"

    def get(self: Any) -> Any:
        try:
            return self.__dict__[slot]
        except KeyError:
            value = self.__dict__[slot] = fget(self)
            return value

    setattr(cls, name, property(get, doc=prop.__doc__))


def _cached_method(cls: type, name: str) -> None:
    method = getattr(cls, name)
    slot = f"_ckpt_{name}"

    def call(self: Any) -> Any:
        try:
            return self.__dict__[slot]
        except KeyError:
            value = self.__dict__[slot] = method(self)
            return value

    setattr(cls, name, call)


def _vals(address: int, n: int) -> memoryview:
    """The `n` values of a `wasmtime_component_vallist_t` at `address`, as raw bytes."""
    return memoryview((ctypes.c_char * (n * _VAL_SIZE)).from_address(address)).cast("B")


def _install_bulk_bytes() -> None:
    to_c, from_c = ListType.convert_to_c, ListType.convert_from_c

    def convert_to_c(self: ListType, store: Any, val: Any, ptr: Any) -> None:
        if not (isinstance(val, bytes) and self._is_bytes()):
            to_c(self, store, val, ptr)
            return
        n = len(val)
        raw = ffi.wasmtime_component_vallist_t()
        ffi.wasmtime_component_vallist_new_uninit(raw, n)
        if n:
            # Each element: kind U8 at offset 0, the byte at the start of the union; written in
            # place with two strided copies (the rest of each value is never read).
            vals = _vals(ctypes.cast(raw.data, ctypes.c_void_p).value or 0, n)
            vals[0::_VAL_SIZE] = bytes((_U8_KIND,)) * n
            vals[_VAL_OF::_VAL_SIZE] = val
            vals.release()
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
        ptr.contents.of.list = raw

    def convert_from_c(self: ListType, c: Any) -> Any:
        if not self._is_bytes():
            return from_c(self, c)
        assert c.kind == ffi.WASMTIME_COMPONENT_LIST.value
        try:
            n = c.of.list.size
            if n == 0:
                return b""
            vals = _vals(ctypes.cast(c.of.list.data, ctypes.c_void_p).value or 0, n)
            try:
                return bytes(vals[_VAL_OF::_VAL_SIZE])  # one strided copy of n bytes
            finally:
                vals.release()
        finally:
            ffi.wasmtime_component_vallist_delete(ctypes.byref(c.of.list))

    ListType.convert_to_c = convert_to_c  # type: ignore[method-assign]
    ListType.convert_from_c = convert_from_c  # type: ignore[method-assign]


def _to_str(vec: Any) -> str:
    # wasmtime-py's `to_str`, one copy: the bytes straight from C into a `bytes`.
    n = vec.size
    return ctypes.string_at(vec.data, n).decode("utf-8") if n else ""


def _bytes_to_capi(s: Any) -> Any:
    # wasmtime-py's `bytes_to_capi` without its intermediate ctypes array.
    if not isinstance(s, (bytes, bytearray)):
        raise TypeError("expected bytes or bytearray")
    vec = ffi.wasm_byte_vec_t()
    n = len(s)
    ffi.wasm_byte_vec_new_uninitialized(ctypes.byref(vec), n)
    if n:
        ctypes.memmove(vec.data, bytes(s) if isinstance(s, bytearray) else s, n)
    return vec


def _install_fast_names() -> None:
    ffi.to_str = _to_str
    ffi.bytes_to_capi = _bytes_to_capi
    record_kind = ffi.WASMTIME_COMPONENT_RECORD.value
    bool_kind = ffi.WASMTIME_COMPONENT_BOOL

    def convert_from_c(self: RecordType, c: Any) -> Any:
        # wasmtime-py's, minus decoding every field's name to assert it is the type's.
        assert c.kind == record_kind
        record = c.of.record
        try:
            ret = Record()
            values = ret.__dict__
            data = record.data
            for i, (name, ty) in zip(range(record.size), self.fields):
                raw = data[i].val
                values[name] = ty.convert_from_c(raw)
                raw.kind = bool_kind  # converted: nothing left for the delete below to free
                raw.of.boolean = False
            return ret
        finally:
            ffi.wasmtime_component_valrecord_delete(record)

    RecordType.convert_from_c = convert_from_c  # type: ignore[method-assign]


# The types of each host function, by its index in wasmtime-py's FUNCTIONS slab: the same
# import always has the same type.
_HOST_TYPES: dict[int, tuple[list[Any], Any]] = {}


@ffi.wasmtime_component_func_callback_t
def _host_func_impl(idx, context, ty_raw, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    # wasmtime-py's `func_impl`, with the parameter and result types kept per function.
    def run(store: StoreContext) -> None:
        key = idx or 0
        types = _HOST_TYPES.get(key)
        if types is None:
            with FuncType._from_ptr(ty_raw, owner=store) as fty:
                types = _HOST_TYPES[key] = ([ty for _, ty in fty.params], fty.result)
        param_tys, result_ty = types
        pyargs = [ty.convert_from_c(args[i]) for ty, i in zip(param_tys, range(nargs))]
        result = FUNCTIONS.get(key)(store, *pyargs)
        if result_ty is not None:
            result_ty.convert_to_c(store, result, results)

    return catch_exceptions(context, run)


def add_host_func(instance: LinkerInstance, name: str, func: Callable[..., Any]) -> None:
    """`LinkerInstance.add_func`, calling back through `_host_func_impl`."""
    instance._assert_not_locked()
    name_bytes = name.encode("utf-8")
    idx = FUNCTIONS.allocate(func)
    _HOST_TYPES.pop(idx, None)  # a slot freed by a dropped linker may be handed out again
    err = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(),
        ctypes.create_string_buffer(name_bytes),
        len(name_bytes),
        _host_func_impl,
        idx,
        func_finalize,
    )
    if err:
        from wasmtime import WasmtimeError

        raise WasmtimeError._from_ptr(err)


def install() -> None:
    if getattr(ListType, _MARK, False):
        return
    _cached_property(FuncType, "params")
    _cached_property(FuncType, "result")
    _cached_property(RecordType, "fields")
    _cached_property(VariantType, "cases")
    _cached_property(ListType, "element")
    _cached_property(OptionType, "payload")
    _cached_property(ResultType, "ok")
    _cached_property(ResultType, "err")
    _cached_method(VariantLikeType, "_tagged")
    _cached_method(ListType, "_is_bytes")
    _install_bulk_bytes()
    _install_fast_names()
    setattr(ListType, _MARK, True)
