"""The sandbox of the Python host, shown with the hostile test component (tests/hostile-guest,
built to target/hostile.wasm by `make hostile`): a call deadline, a memory limit, traps that
poison only their own instance, and no WASI authority."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline_checkpoint import (
    Checkpoint,
    Codec,
    ComponentFailure,
    InvalidInput,
    Runtime,
    Watermark,
)
from conftest import REPO

HOSTILE = Path(os.environ.get("CKPT_HOSTILE_WASM", REPO / "target" / "hostile.wasm"))


@pytest.fixture(scope="module")
def hostile() -> Runtime:
    assert HOSTILE.is_file(), f"no hostile component at {HOSTILE}: build it with `make hostile`"
    return Runtime(HOSTILE, call_deadline_s=0.2, max_memory_bytes=16 << 20)


def command(codec: Codec, name: str) -> None:
    # The hostile guest takes its command from the run-id given to `codec.validate`.
    codec.validate(Checkpoint(name, "s", 1, 1, Watermark(0, 0), 0))


def test_a_guest_that_loops_is_stopped_at_the_deadline(hostile: Runtime) -> None:
    codec = Codec(runtime=hostile)
    with pytest.raises(ComponentFailure, match=r"ran past its deadline of 0\.2s"):
        command(codec, "loop")
    command(codec, "harmless")  # the codec answers again, from a fresh instance


def test_a_guest_that_allocates_without_bound_is_stopped_by_the_memory_limit(
    hostile: Runtime,
) -> None:
    codec = Codec(runtime=hostile)
    with pytest.raises(ComponentFailure, match="wasm trap"):
        command(codec, "bomb")
    command(codec, "harmless")


def test_a_panicking_guest_is_a_trap_not_a_crash(hostile: Runtime) -> None:
    with pytest.raises(ComponentFailure, match="wasm trap"):
        command(Codec(runtime=hostile), "panic")


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        ("files", "preopens=0"),
        ("env", "vars=0 []; args=0"),
        ("socket", "access-denied"),
    ],
)
def test_the_guest_has_no_files_environment_or_network(
    hostile: Runtime, probe: str, expected: str
) -> None:
    with pytest.raises(InvalidInput) as e:
        command(Codec(runtime=hostile), probe)
    assert e.value.field == f"probe:{probe}"
    assert expected in e.value.reason
