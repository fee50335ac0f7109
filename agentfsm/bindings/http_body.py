"""Reading HTTP bodies from servers we do not control: never more than a cap, decoded size included."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

MAX_REPLY_BYTES = 16 * 1024 * 1024
"""No LLM reply, streamed or not, is read past this: a server cannot make a run hold gigabytes."""


class ReplyTooLarge(Exception):
    """A body went past its cap; `announced` is the Content-Length when that alone gave it away."""

    def __init__(self, announced: int | None = None) -> None:
        super().__init__(announced)
        self.announced = announced


async def read_capped(response: httpx.Response, cap: int = MAX_REPLY_BYTES) -> bytes:
    """The (decoded) body, read piece by piece and given up past `cap` bytes."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise ReplyTooLarge(int(declared))
    data = bytearray()
    async for chunk in response.aiter_bytes():  # decoded (gzip...): the cap bounds what is kept
        data += chunk
        if len(data) > cap:
            raise ReplyTooLarge()
    return bytes(data)


async def capped_lines(lines: AsyncIterator[str], cap: int = MAX_REPLY_BYTES) -> AsyncIterator[str]:
    """A stream's lines, given up once they add up to more than `cap` characters."""
    total = 0
    async for line in lines:
        total += len(line) + 1
        if total > cap:
            raise ReplyTooLarge()
        yield line
