"""Loading feed plugins by ``type`` (spec 0009 #loading): a built-in, a file, an entry point.

A feed ``type`` is what ``feeds.toml`` (a client) and ``node.toml`` (a node) say:

- a built-in name: ``whats-hot``, ``friends-of-friends``, ``tag``
  (:data:`~protocol.feeds.builtins.BUILTIN_FEEDS`);
- ``PATH.py:Class``: a class in a Python file (``./examples/feeds/long_posts.py:LongPosts``);
- ``entry:NAME``: a class installed by a package in the ``murmur.feeds`` entry-point group.

The feed is built as ``Class(**params)`` and must have a ``str`` ``name`` and a
coroutine function ``page``. Anything else, including any exception the file raises
while importing or the class raises while being built, is
:class:`~protocol.errors.FeedLoadError` with a message naming the file or class and
what to do; an unknown type or a missing entry point is
:class:`~protocol.errors.FeedNotFoundError`. Loading a file or an entry point runs its
code: :func:`check_feed_type` checks that a type exists without running any.

This module mirrors ``client/moderation/config.py``'s filter loader but imports nothing
of ``client`` or ``node``: both use it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from protocol.errors import FeedError, FeedLoadError, FeedNotFoundError
from protocol.feeds import Feed
from protocol.feeds.builtins import BUILTIN_FEEDS

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["ENTRY_POINT_GROUP", "check_feed_type", "is_custom_feed", "load_feed"]

#: The entry-point group a package declares its feeds in (``pyproject.toml``:
#: ``[project.entry-points."murmur.feeds"] my-feed = "my_pkg.feeds:MyFeed"``).
ENTRY_POINT_GROUP: Final = "murmur.feeds"

#: Longest error message of someone else's exception quoted in ours.
_MAX_MESSAGE = 400


def _usage() -> str:
    known = ", ".join(sorted(BUILTIN_FEEDS))
    return f"a built-in ({known}), PATH.py:Class or entry:NAME"


def is_custom_feed(type_: str) -> bool:
    """Whether ``type_`` names someone else's code (a file or an entry point) rather
    than a built-in: a client or node may run such a feed apart (spec 0009 #deadline)."""
    return type_ not in BUILTIN_FEEDS and (type_.startswith("entry:") or ".py:" in type_)


def _split_file_type(type_: str) -> tuple[Path, str]:
    path_text, _, class_name = type_.rpartition(":")
    if not path_text.endswith(".py") or not class_name.isidentifier():
        raise FeedLoadError(
            f"feed type {type_!r}: a feed in a file is PATH.py:ClassName, "
            "e.g. ./examples/feeds/long_posts.py:LongPosts"
        )
    return Path(path_text), class_name


def _entry_points() -> list[EntryPoint]:
    # Imported here: importlib.metadata pulls in email and socket, which protocol/
    # does not import (tests/protocol/test_purity.py); only entry: types need it.
    import importlib.metadata

    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _no_entry_point(name: str, eps: list[EntryPoint]) -> FeedNotFoundError:
    known = ", ".join(sorted(ep.name for ep in eps)) or "none installed"
    return FeedNotFoundError(
        f"no feed {name!r} in the {ENTRY_POINT_GROUP} entry points ({known}): install the "
        "package that provides it, or name its file as PATH.py:Class"
    )


def check_feed_type(type_: str) -> None:
    """Raise what :func:`load_feed` would for a type that does not exist (an unknown
    type, no such file, no such entry point), without running any of its code."""
    if type_ in BUILTIN_FEEDS:
        return
    if type_.startswith("entry:"):
        name = type_.removeprefix("entry:")
        eps = _entry_points()
        if not any(ep.name == name for ep in eps):
            raise _no_entry_point(name, eps)
        return
    if ".py:" in type_:
        path, _ = _split_file_type(type_)
        if not path.is_file():
            raise FeedLoadError(f"feed type {type_!r}: no such file {path} (check the path)")
        return
    raise FeedNotFoundError(f"unknown feed type {type_!r}: {_usage()}")


def _load_module(path: Path, type_: str) -> ModuleType:
    """Import someone's Python file as a fresh module; any failure, including an
    exception the file raises, is FeedLoadError naming the file: never a crash."""
    digest = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogatepass")).hexdigest()
    module_name = f"murmur_user_feed_{digest[:16]}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise FeedLoadError(f"feed type {type_!r}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # someone else's code: report, never crash
        sys.modules.pop(module_name, None)
        message = f"feed type {type_!r}: importing {path} raised {exc!r}: fix the file"
        raise FeedLoadError(message[:_MAX_MESSAGE]) from None
    return module


def _feed_class(type_: str) -> Callable[..., Any]:
    """The class (or factory) a type names; importing a file or entry point runs it."""
    if type_ in BUILTIN_FEEDS:
        return BUILTIN_FEEDS[type_]
    if type_.startswith("entry:"):
        name = type_.removeprefix("entry:")
        eps = _entry_points()
        matches = [ep for ep in eps if ep.name == name]
        if not matches:
            raise _no_entry_point(name, eps)
        try:
            cls = matches[0].load()
        except Exception as exc:  # someone else's package: report, never crash
            message = f"feed type {type_!r}: entry point {matches[0].value!r} failed: {exc!r}"
            raise FeedLoadError(message[:_MAX_MESSAGE]) from None
        if not callable(cls):
            raise FeedLoadError(f"feed type {type_!r}: {matches[0].value!r} is not a class")
        return cls  # type: ignore[no-any-return]
    if ".py:" in type_:
        path, class_name = _split_file_type(type_)
        if not path.is_file():
            raise FeedLoadError(f"feed type {type_!r}: no such file {path} (check the path)")
        module = _load_module(path, type_)
        cls = getattr(module, class_name, None)
        if cls is None:
            raise FeedLoadError(
                f"feed type {type_!r}: {path} has no {class_name} (check the class name)"
            )
        if not callable(cls):
            raise FeedLoadError(f"feed type {type_!r}: {class_name} in {path} is not a class")
        return cls  # type: ignore[no-any-return]
    raise FeedNotFoundError(f"unknown feed type {type_!r}: {_usage()}")


def load_feed(type_: str, params: Mapping[str, Any] | None = None) -> Feed:
    """The feed ``type_`` names, built as ``Class(**params)`` (spec 0009 #loading).

    Raises :class:`~protocol.errors.FeedNotFoundError` for an unknown type or entry
    point, :class:`~protocol.errors.FeedLoadError` for everything else that goes wrong.
    """
    if params is None:
        params = {}
    if not isinstance(params, Mapping) or not all(
        isinstance(k, str) and k.isidentifier() for k in params
    ):
        raise FeedLoadError(f"feed type {type_!r}: params must be a table of name = value")
    cls = _feed_class(type_)
    try:
        feed = cls(**params)
    except FeedError as exc:  # a feed explaining its own parameters
        raise FeedLoadError(f"feed type {type_!r}: {exc.message}"[:_MAX_MESSAGE]) from None
    except TypeError as exc:  # unknown or missing keyword parameters
        raise FeedLoadError(
            f"feed type {type_!r}: bad parameters {sorted(params)}: {exc}"[:_MAX_MESSAGE]
        ) from None
    except Exception as exc:  # someone else's code: report, never crash
        message = f"feed type {type_!r}: building it raised {exc!r}"
        raise FeedLoadError(message[:_MAX_MESSAGE]) from None
    name = getattr(feed, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise FeedLoadError(
            f"feed type {type_!r}: the feed has no name: give its class a str "
            'attribute, e.g. name = "long-posts"'
        )
    if not inspect.iscoroutinefunction(getattr(feed, "page", None)):
        raise FeedLoadError(
            f"feed type {type_!r}: the feed has no coroutine page: define "
            "async def page(self, ctx, src) -> Page"
        )
    return feed  # type: ignore[no-any-return]
