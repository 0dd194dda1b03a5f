"""A feed of recent long posts, the one the README builds (spec 0009 #interface)."""

from protocol.events import Event
from protocol.feeds import FeedContext, Page, Source, read_time_cursor, time_cursor


class LongPosts:
    """Recent posts of more than 280 characters."""

    name = "long-posts"

    def __init__(self, min_chars: int = 280) -> None:
        self.min_chars = min_chars

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        posts = await src.events(kinds=["post"], before=read_time_cursor(ctx.cursor), limit=200)
        chosen: list[Event] = []
        for i, post in enumerate(posts):  # newest first; a post's body always has text
            if post.body is not None and len(post.body["text"]) > self.min_chars:
                chosen.append(post)
            if len(chosen) == ctx.limit or i == len(posts) - 1:  # resume after this one
                more = i < len(posts) - 1 or len(posts) == 200
                return Page.of(chosen, cursor=time_cursor(post) if more else None)
        return Page()  # no post left
