"""protocol/ is sans-IO (STYLE.md): importing it pulls in no I/O framework."""

from __future__ import annotations

import subprocess
import sys
import types

import protocol

FORBIDDEN = ("aiohttp", "httpx", "sqlite3", "asyncio", "node", "client", "socket")


def test_importing_protocol_imports_no_io_module() -> None:
    code = (
        "import sys, protocol, protocol.chain, protocol.encoding, protocol.events, "
        "protocol.identity, protocol.kinds, protocol.errors, protocol.limits\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.iter_modules(protocol.__path__):\n"
        "    importlib.import_module('protocol.' + m.name)\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_is_exactly_all() -> None:
    # Submodules appear as attributes once imported (kinds and limits are exported on
    # purpose); `annotations` is the __future__ feature object.
    public = {
        name
        for name, value in vars(protocol).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    } - {"annotations"}
    assert public == set(protocol.__all__) - {"kinds", "limits", "__version__"}
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


def test_error_codes_are_unique_and_resolvable() -> None:
    from protocol import errors

    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type)
        and issubclass(c, errors.ProtocolError)
        and c is not errors.RemoteError
    ]
    leaves = [c for c in classes if not c.__subclasses__()]
    codes = [c.code for c in leaves]
    assert len(codes) == len(set(codes) - {"bad-request"}) + codes.count("bad-request")
    for cls in leaves:
        assert errors.error_for_code(cls.code) is not None
    assert errors.error_for_code("invalid-signature") is errors.InvalidSignatureError
    remote = errors.RemoteError("rate-limited", "slow down", status=429)
    assert remote.code == "rate-limited" and remote.to_dict()["message"] == "slow down"
