"""Same limits in every host: a checkpoint the options and the sandbox allow is writable and
readable. 1, 4 and 16 MiB of operator state under a 20 MiB `max-checkpoint-bytes`, on the dict
store; the time of each write and read is printed.

wasmtime-py 50 charges 48 bytes of "hostcall fuel" per byte of a `list<u8>` the guest hands the
host, against a default of 128 MiB per call (about 2.6 MiB of bytes); the adapter raises it
(`_runtime`, host limit 5). Without that, 4 and 16 MiB fail with "fuel allocated for hostcalls
has been exhausted"."""

from __future__ import annotations

import platform
import time

import pytest

from pipeline_checkpoint import (
    Checkpoint,
    Checkpointer,
    DictStorage,
    OperatorState,
    Options,
    Runtime,
    Watermark,
)
from pipeline_checkpoint import _runtime

MiB = 1 << 20
OPTIONS = Options(namespace="large", max_retained=1, max_checkpoint_bytes=20 * MiB)
# A 128 MiB sandbox (a write needs up to 6 x 20 MiB + 2 MiB: the component refuses the 20 MiB
# limit in the default 64 MiB), with a longer deadline: 16 MiB takes about 6 s to
# write here (most of it wasmtime's C API converting one `Val` per byte), within the default
# 10 s on an idle machine, but too close to it for a test that must not flake under load.
RUNTIME = Runtime(call_deadline_s=60, max_memory_bytes=128 * MiB)


@pytest.mark.parametrize("mib", [1, 4, 16])
def test_a_large_operator_state_is_written_and_read_back(mib, capsys) -> None:
    state = bytes(range(256)) * (mib * MiB // 256)
    checkpoint = Checkpoint(
        "run", "stage", 1, 1, Watermark(1, 0), 0, operator_states=[OperatorState("window", state)]
    )
    checkpointer = Checkpointer.open(DictStorage(), None, OPTIONS, runtime=RUNTIME)
    start = time.perf_counter()
    receipt = checkpointer.write(checkpoint)
    wrote = time.perf_counter()
    back = checkpointer.get("run", "stage")
    read = time.perf_counter()
    assert receipt.sequence == 1
    assert back.operator_states[0].state == state
    assert back == checkpoint
    with capsys.disabled():
        print(
            f"\n  python: {mib:2} MiB of operator state: write {wrote - start:.2f} s, "
            f"read {read - wrote:.2f} s"
        )


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the hostcall fuel is only looked for with glibc on Linux",
)
def test_the_hostcall_fuel_is_raised_in_this_process() -> None:
    # Fails when a wasmtime-py update moves the field: then the adapter leaves the default and
    # says why (`hostcall_fuel_problem`), and states over about 2.6 MiB fail again.
    Checkpointer.open(DictStorage(), None, OPTIONS, runtime=RUNTIME)
    assert _runtime.hostcall_fuel_settable(), _runtime.hostcall_fuel_problem()
