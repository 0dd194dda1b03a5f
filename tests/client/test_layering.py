"""The client is one library with thin faces over it (issue #17 point 7): the CLI
(``client/cli/``) and the web client (``client/web/``) import the library, the library
imports neither, and the faces do not import each other (except ``murmur web``, the
CLI command that starts the web face). Checked on the source, so an import inside a
function (a lazy one) counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import client

ROOT = Path(client.__file__).parent
FACES = ("client.cli", "client.web")
#: The one face-to-face import: ``murmur web`` starts the web face.
ALLOWED = {("client.cli.web_cmds", "client.web")}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(module: str, source: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` (of ``module``) imports, at any depth, relative imports
    resolved."""
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _upward(module: str, imports: set[str]) -> list[str]:
    """The face modules ``module`` imports that its layer may not."""
    own = next((f for f in FACES if _within(module, f)), None)
    bad = []
    for name in sorted(imports):
        for face in FACES:
            if face == own or not _within(name, face):
                continue
            if not any(_within(module, m) and _within(name, t) for m, t in ALLOWED):
                bad.append(name)
    return bad


SOURCES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[_module(p) for p in SOURCES])
def test_no_module_imports_a_face_it_is_not_part_of(path: Path) -> None:
    """Issue #17 point 7: the library (and the devnet seeding) never imports the CLI
    or the web client, and the web client never imports the CLI."""
    module = _module(path)
    source = path.read_text(encoding="utf-8")
    imports = _imports(module, source, is_package=path.name == "__init__.py")
    assert _upward(module, imports) == []


@pytest.mark.parametrize(
    ("module", "source", "bad"),
    [
        (
            "client.devnet.seed",
            "def f():\n    from client.cli.main import build_parser\n",
            ["client.cli.main", "client.cli.main.build_parser"],
        ),
        (
            "client.web.pages.post",
            "from ...cli import render\n",
            ["client.cli", "client.cli.render"],
        ),
        ("client.session", "import client.web.app\n", ["client.web.app"]),
        ("client.web.app", "from client.session import Session\n", []),
        ("client.cli.web_cmds", "def f():\n    from client.web import run\n", []),
        (
            "client.cli.post_cmds",
            "from client.web import render\n",
            ["client.web", "client.web.render"],
        ),
    ],
    ids=["lazy", "relative", "library-to-web", "face-to-library", "murmur-web", "cli-to-web"],
)
def test_the_check_sees_lazy_and_relative_imports(module: str, source: str, bad: list[str]) -> None:
    """The walker itself: an import inside a function and a relative one are found."""
    assert _upward(module, _imports(module, source)) == bad
