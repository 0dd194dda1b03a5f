"""``GET /v1/info`` answers only what specs/openapi.json declares (spec 0004 #info):
every field, nested ones included, with its type, on each store backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from node.state import STORE
from tests.node.backends import both_backends
from tests.node.conftest import Author, Node

pytestmark = both_backends()

ROOT = Path(__file__).resolve().parents[2]
_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict, "array": list, "string": str, "boolean": bool,
    "integer": int, "number": (int, float), "null": type(None),
}  # fmt: skip


def undeclared(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Where ``value`` is not what ``schema`` (the subset of JSON Schema the OpenAPI
    document uses for it) declares: an undeclared key, a wrong type, const or enum."""
    wrong: list[str] = []
    if "const" in schema and value != schema["const"]:
        wrong.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        wrong.append(f"{where}: {value!r} not in {schema['enum']!r}")
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(
            isinstance(value, _TYPES[n]) and not (n in ("integer", "number") and value is True)
            for n in names
        )
        if not ok or (isinstance(value, bool) and "boolean" not in names):
            wrong.append(f"{where}: {value!r} is not {names}")
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                wrong += undeclared(item, props[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                wrong += undeclared(item, extra, f"{where}.{key}")
            else:
                wrong.append(f"{where}.{key}: not declared")
    return wrong


async def test_every_info_field_is_declared_in_the_openapi_document(
    node: Node, author: Author
) -> None:
    """spec 0004 #info, #store-processes: ``store`` and ``federation.leader`` (and every
    other field) are in the Info schema, typed; the required ones are answered."""
    await node.ingest(author.post("x"))
    doc = json.loads((ROOT / "specs" / "openapi.json").read_text("utf-8"))
    schema = doc["components"]["schemas"]["Info"]
    info = (await node.http.get("/v1/info")).json()
    assert undeclared(info, schema, "info") == []
    assert set(schema["required"]) <= set(info)
    assert info["store"] in schema["properties"]["store"]["enum"]
    assert info["store"] == node.app[STORE].backend  # the store serving, not the config's
    assert info["federation"]["leader"] is True
