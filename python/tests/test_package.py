"""The tests run what users get: the `pipeline-checkpoint` wheel installed in the virtualenv
(python/run-tests.sh builds and installs it), with the shipped component inside the package."""

from __future__ import annotations

import importlib.resources
import json
import sys
from importlib.metadata import distribution
from pathlib import Path

import pipeline_checkpoint
from pipeline_checkpoint import Checkpointer, DictStorage, Options, default_component_path
from conftest import REPO

SHIPPED = REPO / "component" / "checkpoint.wasm"
#: The SQLite store's tables, written once for the Rust and Python hosts.
SQLITE_SCHEMA = REPO / "host" / "src" / "storage" / "sqlite-schema.sql"


def test_the_package_comes_from_the_installed_wheel_not_the_sources() -> None:
    package = Path(pipeline_checkpoint.__file__).resolve().parent
    assert Path(sys.prefix).resolve() in package.parents, f"{package} is not in {sys.prefix}"
    assert (REPO / "python" / "src") not in package.parents
    installed = distribution("pipeline-checkpoint").read_text("direct_url.json")
    direct_url = json.loads(installed or "{}")
    assert not direct_url.get("dir_info", {}).get("editable"), "an editable install, not the wheel"


def test_the_default_component_is_the_shipped_file_inside_the_package() -> None:
    component = default_component_path()
    assert component.parent == Path(pipeline_checkpoint.__file__).parent
    assert component.read_bytes() == SHIPPED.read_bytes(), (
        f"the installed component differs from {SHIPPED}: run python/run-tests.sh to reinstall"
    )
    checkpointer = Checkpointer.open(DictStorage(), None, Options("package", 1, 1 << 20))
    assert checkpointer.resume_point("r", "s").point.sequence == 0


def test_the_sqlite_schema_is_the_rust_hosts_file_inside_the_package() -> None:
    installed = importlib.resources.files("pipeline_checkpoint") / "sqlite-schema.sql"
    assert installed.read_bytes() == SQLITE_SCHEMA.read_bytes(), (
        f"the installed schema differs from {SQLITE_SCHEMA}: run python/run-tests.sh to reinstall"
    )


def test_the_wheel_metadata_is_complete() -> None:
    meta = distribution("pipeline-checkpoint").metadata
    assert meta["Name"] == "pipeline-checkpoint"
    assert meta["Version"] == "0.1.0"
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["License-File"] == "LICENSE"
    assert meta["Requires-Python"] == ">=3.10"
    assert "wasmtime<51,>=50.0.1" in meta.get_all("Requires-Dist")
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload() == (REPO / "python" / "README.md").read_text(encoding="utf-8")
