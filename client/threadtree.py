"""A thread's replies as a tree, in reading order (spec 0007 §views, thread).

Pure: events in, ``(depth, event)`` out; ``murmur thread`` and the web's thread page
both draw this walk: depth-first, children
oldest first; a reply whose parent is not among the replies (withheld everywhere,
deleted, hidden) hangs under the root, so nothing shown is lost; a cycle cannot loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.events import Event

__all__ = ["reply_tree"]


def reply_tree(replies: Sequence[Event], root_id: bytes) -> list[tuple[int, Event]]:
    """``replies`` (visible posts with a ``reply`` field) in depth-first order, with
    their depth under the root (1 for a direct reply)."""
    ids = {e.id for e in replies} | {root_id}
    children: dict[bytes, list[Event]] = {}
    for e in replies:
        reply = (e.body or {}).get("reply")
        parent = reply.get("parent") if isinstance(reply, dict) else None
        key = parent if isinstance(parent, bytes) and parent in ids and parent != e.id else root_id
        children.setdefault(key, []).append(e)
    out: list[tuple[int, Event]] = []
    stack: list[tuple[int, Event]] = [(1, c) for c in reversed(children.get(root_id, []))]
    seen: set[bytes] = set()
    while stack:
        depth, e = stack.pop()
        if e.id in seen:
            continue
        seen.add(e.id)
        out.append((depth, e))
        stack.extend((depth + 1, c) for c in reversed(children.get(e.id, [])))
    # A cycle of replies (each the other's parent) is not reachable from the root.
    out.extend((1, e) for e in {r.id: r for r in replies}.values() if e.id not in seen)
    return out
