"""The sandbox of the Python host, shown with the hostile test component (tests/hostile-guest,
built to target/hostile.wasm by `make hostile`) and with hostile input to the real component: a
call that never ends is stopped by the deadline, a memory bomb by the memory limit, a trap breaks
only its own instance (which then answers `Unusable`), the runtime keeps serving, time spent in
a store callback counts against the deadline, and the guest has no WASI authority. The same
cases as host/tests/sandbox.rs and node/test/sandbox.test.js, with the same error kinds and
texts; no test asserts how fast anything was stopped, only how.

`test_sandbox_summary` plays the three headline cases once more (endless loop, memory bomb, slow
store callback), each followed by a new instance that must serve, and prints one line for `make
reliability` (scripts/reliability.sh): `sandbox python: ...`."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline_checkpoint import (
    Checkpoint,
    Checkpointer,
    Codec,
    ComponentFailure,
    Deadline,
    DictStorage,
    InvalidInput,
    MemoryLimit,
    NotFound,
    Options,
    Runtime,
    Trap,
    Unusable,
    Watermark,
)
from pipeline_checkpoint._runtime import format_duration
from conftest import REPO

HOSTILE = Path(os.environ.get("CKPT_HOSTILE_WASM", REPO / "target" / "hostile.wasm"))
MEMORY_LIMIT = 64 << 20
OPTIONS = Options(namespace="sandbox", max_retained=2, max_checkpoint_bytes=1 << 20)


def hostile_runtime(**limits: float) -> Runtime:
    assert HOSTILE.is_file(), f"no hostile component at {HOSTILE}: build it with `make hostile`"
    return Runtime(HOSTILE, **limits)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def hostile() -> Runtime:
    """Calls stopped after 200 ms, as in the Rust test."""
    return hostile_runtime(call_deadline_s=0.2, max_memory_bytes=MEMORY_LIMIT)


@pytest.fixture(scope="module")
def roomy() -> Runtime:
    """The default 10 s deadline: for the cases that must not meet it on a loaded machine."""
    return hostile_runtime(max_memory_bytes=MEMORY_LIMIT)


def command(name: str) -> Checkpoint:
    # The hostile guest takes its command from the run-id given to `codec.validate`.
    return Checkpoint(name, "s", 1, 1, Watermark(0, 0), 0)


def first_line(e: BaseException) -> str:
    return str(e).splitlines()[0]


def assert_runtime_keeps_serving(runtime: Runtime) -> None:
    Codec(runtime=runtime).validate(command("well-behaved"))


def open_on(runtime: Runtime) -> Checkpointer:
    return Checkpointer.open(DictStorage(), None, OPTIONS, runtime=runtime)


def test_an_endless_loop_is_stopped_by_the_deadline_and_the_runtime_keeps_serving(
    hostile: Runtime,
) -> None:
    checkpointer = open_on(hostile)
    with pytest.raises(Deadline) as e:
        checkpointer.get("loop", "s")
    assert e.value.kind == "Deadline"
    assert first_line(e.value).startswith(
        "the component call `checkpointer.get` ran past its deadline of 200ms and was "
        "interrupted: "
    )
    with pytest.raises(Unusable) as again:
        checkpointer.get("well-behaved", "s")
    assert str(again.value) == (
        "cannot call `checkpointer.get`: this instance of the component is unusable after an "
        "earlier failure (the component call `checkpointer.get` ran past its deadline of 200ms "
        "and was interrupted); open a new one"
    )
    with pytest.raises(NotFound):
        open_on(hostile).get("well-behaved", "s")
    assert_runtime_keeps_serving(hostile)


def test_a_codec_stopped_by_the_deadline_answers_from_a_fresh_instance(hostile: Runtime) -> None:
    codec = Codec(runtime=hostile)
    with pytest.raises(Deadline, match=r"`codec\.validate` ran past its deadline of 200ms"):
        codec.validate(command("loop"))
    codec.validate(command("harmless"))  # the codec holds no state: a fresh instance answers


def test_a_memory_bomb_is_stopped_by_the_memory_limit_and_the_runtime_keeps_serving(
    roomy: Runtime,
) -> None:
    checkpointer = open_on(roomy)
    with pytest.raises(MemoryLimit) as e:
        checkpointer.get("bomb", "s")
    assert e.value.kind == "MemoryLimit"
    found = re.match(
        rf"the component call `checkpointer\.get` trapped after its memory limit of "
        rf"{MEMORY_LIMIT} bytes refused to grow its memory from (\d+) to (\d+) bytes: wasm trap",
        first_line(e.value),
    )
    assert found, first_line(e.value)
    assert int(found[1]) <= MEMORY_LIMIT < int(found[2])
    with pytest.raises(Unusable, match="unusable after an earlier failure"):
        checkpointer.get("well-behaved", "s")
    assert_runtime_keeps_serving(roomy)


def test_a_panicking_guest_is_a_trap_of_its_own_instance_only(roomy: Runtime) -> None:
    bystander = open_on(roomy)
    checkpointer = open_on(roomy)
    with pytest.raises(Trap) as e:
        checkpointer.get("panic", "s")
    assert e.value.kind == "Trap"
    assert first_line(e.value).startswith("the component call `checkpointer.get` trapped: wasm trap")
    with pytest.raises(NotFound):
        bystander.get("well-behaved", "s")
    assert_runtime_keeps_serving(roomy)


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        ("files", "preopens=0"),
        ("env", "vars=0 []; args=0"),
        ("socket", "access-denied"),
    ],
)
def test_the_guest_has_no_files_environment_or_network(
    roomy: Runtime, probe: str, expected: str
) -> None:
    with pytest.raises(InvalidInput) as e:
        Codec(runtime=roomy).validate(command(probe))
    assert e.value.field == f"probe:{probe}"
    assert expected in e.value.reason


def test_a_decode_larger_than_the_memory_limit_fails_cleanly() -> None:
    # The real component, hostile input. Smaller than the Rust host's 100 MiB: wasmtime-py
    # lifts a `list<u8>` into 48 bytes of host memory per byte before the guest sees it.
    limit = 2 << 20
    codec = Codec(runtime=Runtime(max_memory_bytes=limit))
    with pytest.raises(MemoryLimit) as e:
        codec.decode(b"\xa5" * (4 << 20))
    assert first_line(e.value).startswith(
        f"the component call `codec.decode` trapped after its memory limit of {limit} bytes "
        "refused to grow its memory from "
    )
    assert codec.decode(codec.encode(command("run-1"))) == command("run-1")


SLOW_CALLBACK_S = 1.0


class SlowGet(DictStorage):
    def get(self, key: str):  # type: ignore[no-untyped-def]
        time.sleep(SLOW_CALLBACK_S)
        return super().get(key)


def test_time_in_a_store_callback_counts_against_the_deadline() -> None:
    # The real component. The late answer is not handed to the guest: the call fails with
    # `Deadline` whether or not the guest would have reached another epoch check.
    runtime = Runtime(call_deadline_s=0.5)
    checkpointer = Checkpointer.open(SlowGet(), None, OPTIONS, runtime=runtime)
    with pytest.raises(Deadline) as e:
        checkpointer.get("run", "s")
    assert str(e.value) == (
        "the component call `checkpointer.get` ran past its deadline of 500ms and was "
        "interrupted: the host call `get` returned after the deadline"
    )
    with pytest.raises(Unusable):
        checkpointer.get("run", "s")
    with pytest.raises(NotFound):
        Checkpointer.open(DictStorage(), None, OPTIONS, runtime=runtime).get("run", "s")


def test_every_failure_kind_is_a_component_failure() -> None:
    for kind in (Deadline, MemoryLimit, Trap, Unusable):
        assert issubclass(kind, ComponentFailure)
        assert kind("x").kind == kind.__name__


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(10.0, "10s"), (0.2, "200ms"), (1.5, "1.5s"), (0.0015, "1.5ms"), (60.0, "60s")],
)
def test_deadlines_are_worded_as_rust_words_a_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_sandbox_summary(
    hostile: Runtime, roomy: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    """The headline cases once more, each followed by a new instance that must serve, with one
    summary line for scripts/reliability.sh (printed past pytest's capture, before the
    assertion, so that a failure shows in it too)."""
    slow_runtime = Runtime(call_deadline_s=0.5)
    failures: list[str] = []
    times: dict[str, float] = {}

    def case(
        name: str, error: type[BaseException], call: Callable[[], object], runtime: Runtime
    ) -> None:
        start = time.perf_counter()
        try:
            call()
        except error:
            times[name] = (time.perf_counter() - start) * 1000
        except Exception as e:  # noqa: BLE001 - reported in the summary line
            failures.append(f"{name}: expected {error.__name__}, got {type(e).__name__}: {e}")
            return
        else:
            failures.append(f"{name}: expected {error.__name__}, the call returned")
            return
        try:
            assert_runtime_keeps_serving(runtime)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{name}: the runtime no longer serves: {e}")

    case("loop", Deadline, lambda: Codec(runtime=hostile).validate(command("loop")), hostile)
    case("bomb", MemoryLimit, lambda: Codec(runtime=roomy).validate(command("bomb")), roomy)
    slow = Checkpointer.open(SlowGet(), None, OPTIONS, runtime=slow_runtime)
    case("slow", Deadline, lambda: slow.get("run", "s"), slow_runtime)

    held = 3 - len(failures)

    def ms(name: str) -> str:
        return f"{times[name]:.0f}" if name in times else "?"

    line = (
        f"sandbox python: {held} of 3 held: endless loop stopped after {ms('loop')} ms (deadline "
        f"200 ms), memory bomb refused at the {MEMORY_LIMIT >> 20} MiB limit after {ms('bomb')} "
        f"ms, slow store callback ({SLOW_CALLBACK_S * 1000:.0f} ms) stopped after {ms('slow')} ms "
        f"(deadline 500 ms); host still serving after each"
        + (f"; FAILED: {'; '.join(failures)}" if failures else "")
    )
    with capsys.disabled():
        # On a line of its own, after pytest's progress dots.
        print(f"\n{line}", file=sys.stderr, flush=True)
    assert not failures, failures
