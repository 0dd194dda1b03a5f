"""Post search queries for ``bench social`` (spec 0004 #search, issue #16 item 8).

Each is a query type of :data:`bench.social.QUERIES`, ``(client, url, state, rng) ->
items``, timed and reported like the others:

- ``search``: ``GET /v1/search?q=`` with 1 to 3 random words of the corpus's
  vocabulary (:mod:`bench.dataset`), limit 50: the target of item 8, p95 < 50 ms.
  Corpus words are common (each is in a few percent of posts or more), which is the
  expensive case for a newest-first page only when words rarely meet; random words
  of one vocabulary meet often, so the mix is dominated by ordinary queries;
- ``search-rare``: a word no post holds next to a common one (the index answers
  "nothing" after one term lookup);
- ``search-tag``: ``GET /v1/search?tag=`` of one of the corpus's six tags.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx

__all__ = ["SEARCH_QUERIES", "SEARCH_TARGET"]

#: The query type carrying item 8's target.
SEARCH_TARGET = "search"
PAGE = 50

#: Words of bench.dataset's vocabulary: function words (in most posts) and topic words.
_WORDS = (
    "the", "of", "and", "people", "water", "network", "node", "post", "federate",
    "signature", "timeline", "moderation", "label", "filter", "murmur", "open",
    "protocol", "public", "conversation", "coffee", "music", "art", "city", "rain",
    "weekend", "news", "write", "number", "find", "long",
)
#: bench.dataset's tags.
_TAGS = ("news", "art", "dev", "music", "rain", "city")


def _search(client: httpx.Client, url: str, params: dict[str, Any]) -> int:
    resp = client.get(url + "/v1/search", params={**params, "limit": PAGE})
    if resp.status_code != 200:
        raise RuntimeError(f"search answered {resp.status_code}: {resp.text[:300]}")
    return len(resp.json()["events"])


def _words(client: httpx.Client, url: str, state: Any, rng: random.Random) -> int:
    return _search(client, url, {"q": " ".join(rng.sample(_WORDS, rng.randint(1, 3)))})


def _rare(client: httpx.Client, url: str, state: Any, rng: random.Random) -> int:
    return _search(client, url, {"q": f"{rng.choice(_WORDS)} zyzzyva{rng.randrange(10**6)}"})


def _tag(client: httpx.Client, url: str, state: Any, rng: random.Random) -> int:
    return _search(client, url, {"tag": rng.choice(_TAGS)})


Query = Callable[[httpx.Client, str, Any, random.Random], int]

#: name -> (what one request is, the function timing it), merged into bench.social.
SEARCH_QUERIES: dict[str, tuple[str, Query]] = {
    "search": ("GET /v1/search?q=, 1-3 corpus words, 50", _words),
    "search-rare": ("... a common word and an absent one", _rare),
    "search-tag": ("GET /v1/search?tag=, a corpus tag, 50", _tag),
}
