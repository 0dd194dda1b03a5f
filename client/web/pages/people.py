"""People: ``GET /search?q=NAME`` (people whose latest verified profile name holds
NAME, as ``murmur search people``) and ``GET /following`` (whom the reader follows,
from their own signed follow events, as ``murmur following``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aiohttp import web

from client.reportlines import ReportLine, report_lines
from client.textsafety import safe_text
from client.views import follow_set, profiles_of, search_view
from client.web.context import WEB, render
from client.web.render import Names
from protocol.errors import BadRequestError
from protocol.events import Event

__all__ = ["setup"]

SEARCH_LIMIT: Final = 20
MAX_QUERY_CHARS: Final = 100

routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class Person:
    did: str
    bio: str | None
    since: int | None = None


def _bio(profile: Event | None) -> str | None:
    bio = (profile.body or {}).get("bio") if profile is not None else None
    return safe_text(bio) if isinstance(bio, str) and bio.strip() else None


@routes.get("/search", name="search")
async def search(request: web.Request) -> web.Response:
    reads = request.app[WEB].reads
    q = request.query.get("q", "").strip()
    if len(q) > MAX_QUERY_CHARS:
        raise BadRequestError(f"a search is at most {MAX_QUERY_CHARS} characters")
    people: list[Person] = []
    report: list[ReportLine] = []
    names = Names(reads.config, {})
    if q:
        async with reads.reader() as reader:
            view = await search_view(reader, q, limit=SEARCH_LIMIT)
        names = Names(reads.config, reads.profiles_with_own(view.profiles))
        people = [Person(did=e.author, bio=_bio(e)) for e in view.items]
        report = report_lines(view.report, names)
    return render(
        request, "search.html", title="Search", q=q, people=people, names=names, report=report
    )


@routes.get("/following", name="following")
async def following(request: web.Request) -> web.Response:
    reads = request.app[WEB].reads
    me = reads.me()
    if me is None:
        return render(request, "no_identity.html", title="Following")
    async with reads.reader() as reader:
        follows = await follow_set(reader, me)
        profiles = await profiles_of(reader, follows)
    names = Names(reads.config, reads.profiles_with_own(profiles))
    people = sorted(
        (Person(did=did, bio=_bio(profiles.get(did)), since=e.ts) for did, e in follows.items()),
        key=lambda p: names.display(p.did).casefold(),
    )
    return render(
        request,
        "following.html",
        title="Following",
        people=people,
        names=names,
        report=report_lines(reader.report, names),
    )


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
