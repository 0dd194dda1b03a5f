"""The browser session itself: ``POST /logout`` forgets it (the cookie is cleared and
the session id no longer works; the start token opens a new one)."""

from __future__ import annotations

from aiohttp import web

from client.web.context import WEB, render

__all__ = ["setup"]

routes = web.RouteTableDef()


@routes.post("/logout", name="logout")
async def logout(request: web.Request) -> web.Response:
    guard = request.app[WEB].guard
    guard.end_session(request)
    response = render(request, "logged_out.html", title="Signed out")
    response.del_cookie(guard.cookie_name, path="/")
    return response


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
