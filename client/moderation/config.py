"""The reader's moderation settings: ``$MURMUR_HOME/filters.toml`` (spec 0006 §config).

::

    # Filters run in this order; the most severe decision wins.
    [[filters]]
    name = "no-spoilers"          # unique; what `murmur filters` commands take
    type = "mute-words"           # a built-in type, "PATH.py:Class", or "entry:NAME"
    enabled = true
    budget_ms = 200               # optional time budget per item
    params = { words = ["spoiler"], exclude_follows = true }

    [[labelers]]                  # labelers the reader trusts, and what each label does
    did = "did:key:z6Mk..."
    labels = { spam = "hide", nsfw = "warn", satire = "badge" }

The file is rewritten atomically by the commands and may be edited by hand. A filter
``type`` names a built-in (:data:`client.moderation.builtins.BUILTINS`), a Python file
and class (``./my_filter.py:MyFilter``, stored as an absolute path), or a filter
installed as a package (``entry:NAME`` in the ``murmur.filters`` entry-point group).
A filter class is built as ``Class(**params)``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import tomli_w

from client.errors import FilterError, FilterLoadError, FilterNotFoundError
from client.files import atomic_write, read_toml, translate_os_errors
from client.moderation.core import Action
from client.moderation.pipeline import DEFAULT_BUDGET_MS
from protocol.errors import InvalidDidError
from protocol.identity import did_method
from protocol.kinds import is_label_value

__all__ = [
    "ENTRY_POINT_GROUP",
    "FILENAME",
    "LABEL_ACTIONS",
    "FilterSpec",
    "LabelerSub",
    "ModerationConfig",
    "check_filter_type",
    "instantiate",
    "is_custom",
    "load_filter_class",
    "load_user_module",
]

FILENAME = "filters.toml"
ENTRY_POINT_GROUP = "murmur.filters"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\Z")
#: What a labeler's label may do; ``ignore`` subscribes without acting.
LABEL_ACTIONS = ("hide", "warn", "badge", "ignore")


@dataclass(slots=True)
class FilterSpec:
    """One configured filter."""

    name: str
    type: str
    enabled: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    budget_ms: float = DEFAULT_BUDGET_MS

    def to_toml(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "type": self.type, "enabled": self.enabled}
        if self.budget_ms != DEFAULT_BUDGET_MS:
            doc["budget_ms"] = self.budget_ms
        doc["params"] = self.params
        return doc


@dataclass(slots=True)
class LabelerSub:
    """A subscribed labeler: its did and the action for each label value."""

    did: str
    labels: dict[str, str] = field(default_factory=dict)

    def action_for(self, val: str) -> Action | None:
        act = self.labels.get(val)
        return None if act in (None, "ignore") else Action(act)


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise FilterError(f"filter name {name!r}: use 1-64 of a-z 0-9 _ . - (starting a-z0-9)")
    return name


def check_label_action(val: str, action: str) -> None:
    if not is_label_value(val):
        raise FilterError(f"label {val!r}: use 1-128 of a-z 0-9 -")
    if action not in LABEL_ACTIONS:
        raise FilterError(f"label {val}: action must be one of {', '.join(LABEL_ACTIONS)}")


@dataclass(slots=True)
class ModerationConfig:
    """``filters.toml``: ordered filters and subscribed labelers."""

    path: Path
    filters: list[FilterSpec] = field(default_factory=list)
    labelers: list[LabelerSub] = field(default_factory=list)

    @classmethod
    def load(cls, home: Path) -> ModerationConfig:
        path = home / FILENAME
        if not path.exists():
            return cls(path=path)
        doc = read_toml(path, "valid TOML")
        out = cls(path=path)
        raw_filters = doc.get("filters", [])
        raw_labelers = doc.get("labelers", [])
        if not isinstance(raw_filters, list) or not isinstance(raw_labelers, list):
            raise FilterError(f"{path}: [[filters]] and [[labelers]] must be arrays of tables")
        for i, raw in enumerate(raw_filters):
            out.filters.append(_filter_from(raw, f"{path}: filters[{i}]"))
        names = [f.name for f in out.filters]
        if len(set(names)) != len(names):
            raise FilterError(f"{path}: two filters have the same name")
        for i, raw in enumerate(raw_labelers):
            out.labelers.append(_labeler_from(raw, f"{path}: labelers[{i}]"))
        dids = [s.did for s in out.labelers]
        if len(set(dids)) != len(dids):
            raise FilterError(f"{path}: a labeler is listed twice in [[labelers]]")
        return out

    def save(self) -> None:
        doc = {
            "filters": [f.to_toml() for f in self.filters],
            "labelers": [{"did": s.did, "labels": s.labels} for s in self.labelers],
        }
        header = b"# Murmur moderation: filters run in this order (spec 0006).\n"
        with translate_os_errors(f"write {self.path}"):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(self.path, header + tomli_w.dumps(doc).encode("utf-8"), mode=0o600)

    # -- filters ----------------------------------------------------------------------

    def find(self, name: str) -> FilterSpec:
        for f in self.filters:
            if f.name == name:
                return f
        known = ", ".join(f.name for f in self.filters) or "none configured"
        raise FilterNotFoundError(f"no filter named {name!r} ({known}; see: murmur filters list)")

    def add(self, spec: FilterSpec, *, position: int | None = None) -> None:
        check_name(spec.name)
        if any(f.name == spec.name for f in self.filters):
            raise FilterError(f"a filter named {spec.name!r} exists; pick another --name")
        if position is None:
            self.filters.append(spec)
        else:
            self.filters.insert(max(0, position), spec)

    def remove(self, name: str) -> FilterSpec:
        spec = self.find(name)
        self.filters.remove(spec)
        return spec

    # -- labelers ---------------------------------------------------------------------

    def labeler(self, did: str) -> LabelerSub | None:
        return next((s for s in self.labelers if s.did == did), None)

    def subscribe(self, did: str, labels: Mapping[str, str]) -> LabelerSub:
        did_method(did)
        for val, action in labels.items():
            check_label_action(val, action)
        sub = self.labeler(did)
        if sub is None:
            sub = LabelerSub(did=did)
            self.labelers.append(sub)
        sub.labels.update(labels)
        return sub

    def unsubscribe(self, did: str) -> None:
        sub = self.labeler(did)
        if sub is None:
            raise FilterNotFoundError(f"not subscribed to labeler {did}")
        self.labelers.remove(sub)


def _filter_from(raw: object, where: str) -> FilterSpec:
    if not isinstance(raw, dict):
        raise FilterError(f"{where} must be a table")
    name, type_ = raw.get("name"), raw.get("type")
    if not isinstance(name, str) or not isinstance(type_, str):
        raise FilterError(f"{where}: 'name' and 'type' must be strings")
    enabled = raw.get("enabled", True)
    params = raw.get("params", {})
    budget = raw.get("budget_ms", DEFAULT_BUDGET_MS)
    if not isinstance(enabled, bool) or not isinstance(params, dict):
        raise FilterError(f"{where}: 'enabled' must be a boolean and 'params' a table")
    if not isinstance(budget, int | float) or isinstance(budget, bool) or not budget > 0:
        raise FilterError(f"{where}: 'budget_ms' must be a positive number")
    unknown = set(raw) - {"name", "type", "enabled", "params", "budget_ms"}
    if unknown:
        raise FilterError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    return FilterSpec(
        name=check_name(name), type=type_, enabled=enabled, params=params, budget_ms=budget
    )


def _labeler_from(raw: object, where: str) -> LabelerSub:
    if not isinstance(raw, dict) or not isinstance(raw.get("did"), str):
        raise FilterError(f"{where} must be a table with a 'did'")
    labels = raw.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise FilterError(f"{where}: 'labels' must map label values to actions")
    try:
        did_method(raw["did"])
    except InvalidDidError as exc:
        raise FilterError(f"{where}: {exc.message}") from None
    for val, action in labels.items():
        check_label_action(val, action)
    return LabelerSub(did=raw["did"], labels=dict(labels))


# -- loading filter classes -----------------------------------------------------------


def load_user_module(path: Path, *, prefix: str) -> ModuleType:
    """Import someone's Python file (a custom filter, labeler rules) as a module.

    Any failure, including an exception raised while the file runs, becomes a
    :class:`FilterLoadError` naming the file: never a crash.
    """
    module_name = f"{prefix}_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise FilterLoadError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # someone else's code: report, never crash
        sys.modules.pop(module_name, None)
        raise FilterLoadError(f"importing {path} raised {exc!r}"[:400]) from None
    return module


def _from_file(spec: str) -> Callable[..., Any]:
    path_text, _, class_name = spec.rpartition(":")
    path = Path(path_text)
    if not path_text or not class_name.isidentifier():
        raise FilterLoadError(f"{spec!r}: a custom filter is PATH.py:ClassName")
    if not path.is_file():
        raise FilterLoadError(f"{spec!r}: no such file {path}")
    try:
        module = load_user_module(path, prefix="murmur_user_filter")
    except FilterLoadError as exc:
        raise FilterLoadError(f"{spec!r}: {exc.message}") from None
    cls = getattr(module, class_name, None)
    if not callable(cls):
        raise FilterLoadError(f"{spec!r}: {path} has no class {class_name}")
    return cls  # type: ignore[no-any-return]


def _from_entry_point(name: str) -> Callable[..., Any]:
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    matches = [ep for ep in eps if ep.name == name]
    if not matches:
        known = ", ".join(sorted(ep.name for ep in eps)) or "none installed"
        raise FilterNotFoundError(
            f"no filter {name!r} in entry points {ENTRY_POINT_GROUP} ({known})"
        )
    try:
        return matches[0].load()  # type: ignore[no-any-return]
    except Exception as exc:  # someone else's package: report, never crash
        raise FilterLoadError(f"entry point {name!r} failed to load: {exc!r}"[:400]) from None


def is_custom(type_: str, builtins: Mapping[str, Callable[..., Any]]) -> bool:
    """Whether ``type_`` names someone else's code (a file or an entry point), which
    the client runs in a worker process (spec 0006 #filter-deadline)."""
    return type_ not in builtins and (type_.startswith("entry:") or ".py:" in type_)


def check_filter_type(type_: str, builtins: Mapping[str, Callable[..., Any]]) -> None:
    """Raise what :func:`load_filter_class` would raise for a type that does not exist
    (unknown type, no such file, no such entry point), without running any of its code."""
    if type_ in builtins:
        return
    if type_.startswith("entry:"):
        name = type_.removeprefix("entry:")
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        if not any(ep.name == name for ep in eps):
            known = ", ".join(sorted(ep.name for ep in eps)) or "none installed"
            raise FilterNotFoundError(
                f"no filter {name!r} in entry points {ENTRY_POINT_GROUP} ({known})"
            )
        return
    if ".py:" in type_:
        path_text, _, class_name = type_.rpartition(":")
        if not path_text or not class_name.isidentifier():
            raise FilterLoadError(f"{type_!r}: a custom filter is PATH.py:ClassName")
        if not Path(path_text).is_file():
            raise FilterLoadError(f"{type_!r}: no such file {path_text}")
        return
    known = ", ".join(sorted(builtins))
    raise FilterNotFoundError(
        f"unknown filter type {type_!r}: a built-in ({known}), PATH.py:Class or entry:NAME"
    )


def instantiate(spec: FilterSpec, builtins: Mapping[str, Callable[..., Any]]) -> Any:
    """``spec``'s filter object, built as ``Class(**params)``; raises ``FilterError``
    subclasses (``filter-load`` for anything its own code raises)."""
    cls = load_filter_class(spec.type, builtins)
    try:
        instance = cls(**spec.params)
    except FilterError as exc:
        raise FilterLoadError(f"filter {spec.name}: {exc.message}") from None
    except TypeError as exc:  # unknown or missing keyword parameters of a custom class
        raise FilterLoadError(f"filter {spec.name} ({spec.type}): bad parameters: {exc}") from None
    except Exception as exc:  # someone else's code: report, never crash
        message = f"filter {spec.name} ({spec.type}): building it raised {exc!r}"
        raise FilterLoadError(message[:400]) from None
    if not callable(getattr(instance, "check", None)):
        raise FilterLoadError(f"filter {spec.name} ({spec.type}): it has no check(item) method")
    return instance


def load_filter_class(type_: str, builtins: Mapping[str, Callable[..., Any]]) -> Callable[..., Any]:
    """The class (or factory) for a filter ``type`` (importing a custom one runs its code)."""
    if type_ in builtins:
        return builtins[type_]
    if type_.startswith("entry:"):
        return _from_entry_point(type_.removeprefix("entry:"))
    if ".py:" in type_:
        return _from_file(type_)
    known = ", ".join(sorted(builtins))
    raise FilterNotFoundError(
        f"unknown filter type {type_!r}: a built-in ({known}), PATH.py:Class or entry:NAME"
    )
