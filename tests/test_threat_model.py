"""THREAT_MODEL.md names the test that shows each attack is stopped: every test it
names must exist, so a rename cannot leave the threat model pointing at nothing.

A reference is ```path.py::test_name``` (the path relative to ``tests/``, or to the
repository for source files) or ```::test_name```, which reuses the last path named
before it in the same section (rows of a table continue the row above).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_REF = re.compile(r"`([\w/]+\.py)?(?:::(\w+)(?:\[[^\]`]*\])?)?`")


def _sections(text: str) -> list[str]:
    return re.split(r"^#+ ", text, flags=re.MULTILINE)


def references(text: str) -> list[tuple[Path, str | None]]:
    refs: list[tuple[Path, str | None]] = []
    for block in _sections(text):
        last: Path | None = None
        for match in _REF.finditer(block):
            path, name = match.group(1), match.group(2)
            if path is None and name is None:
                continue
            if path is not None:
                last = ROOT / "tests" / path
                if not last.exists():
                    last = ROOT / path
            assert last is not None, f"{match.group(0)} names no file before it: {block[:80]}"
            refs.append((last, name))
    return refs


def test_every_test_the_threat_model_names_exists() -> None:
    refs = references((ROOT / "THREAT_MODEL.md").read_text("utf-8"))
    assert len(refs) > 50  # the parser found the tables
    missing = []
    for path, name in refs:
        if not path.exists():
            missing.append(str(path.relative_to(ROOT)))
        elif name is not None and not re.search(
            rf"^(async )?def {re.escape(name)}\(", path.read_text("utf-8"), re.MULTILINE
        ):
            missing.append(f"{path.relative_to(ROOT)}::{name}")
    assert missing == []
