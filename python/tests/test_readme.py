"""The README's Python example runs as written, and the package page shows that same example."""

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


def test_the_package_page_shows_the_readme_example() -> None:
    # python/README.md is the wheel's description (the page on the package index); the example
    # there is the one tested here and by python/install-test.sh.
    page = (REPO / "python" / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"^```python\n(.*?)^```", page, flags=re.M | re.S)
    assert python_blocks() == found[:1], "python/README.md must show the README's Python example"
