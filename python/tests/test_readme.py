"""The README's Python example runs as written."""

from __future__ import annotations

import re

from conftest import REPO

SECTION = "## Embedding from Python"


def python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION) + len(SECTION)
    following = text.find("\n## ", start)
    section = text[start : following if following != -1 else len(text)]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.M | re.S)


def test_readme_python_example_runs() -> None:
    blocks = python_blocks()
    assert blocks, f"no ```python block under {SECTION!r} in README.md"
    for block in blocks:
        # The example checks its own results; an example without a check would prove nothing.
        assert "assert " in block, "the README example should assert what it shows"
        exec(compile(block, "README.md (Embedding from Python)", "exec"), {"__name__": "readme"})
