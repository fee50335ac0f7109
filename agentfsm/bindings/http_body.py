"""Reading HTTP bodies from servers we do not control: never more than a cap, decoded size included."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import httpx

MAX_REPLY_BYTES = 16 * 1024 * 1024
"""No LLM reply, streamed or not, is read past this: a server cannot make a run hold gigabytes."""


class ReplyTooLarge(Exception):
    """A body went past its cap; `announced` is the Content-Length when that alone gave it away."""

    def __init__(self, announced: int | None = None) -> None:
        super().__init__(announced)
        self.announced = announced


_ZLIB_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_PIECE = 64 * 1024
"""Bytes decompressed at a time: a gzip bomb never grows past the cap by more than this."""


async def read_capped(response: httpx.Response, cap: int = MAX_REPLY_BYTES) -> bytes:
    """The (decoded) body, read piece by piece and given up past `cap` bytes.

    gzip and deflate bodies are decompressed here, at most _PIECE bytes at a time, so the cap is checked as
    the data is decompressed: httpx would inflate a whole received chunk first (a 64 KB chunk of a gzip bomb
    is 64 MB).
    """
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise ReplyTooLarge(int(declared))
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in _ZLIB_WBITS:
        return await _inflate_capped(response, _ZLIB_WBITS[encoding], cap)
    data = bytearray()
    async for chunk in response.aiter_bytes():  # identity (or an encoding httpx decodes): chunks are small
        data += chunk
        if len(data) > cap:
            raise ReplyTooLarge()
    return bytes(data)


async def _inflate_capped(response: httpx.Response, wbits: int, cap: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    data = bytearray()
    try:
        async for raw in response.aiter_raw():
            pending = raw
            while pending:
                data += inflater.decompress(pending, _PIECE)
                pending = inflater.unconsumed_tail
                if len(data) > cap:
                    raise ReplyTooLarge()
        data += inflater.flush(_PIECE)
    except zlib.error as exc:
        raise httpx.DecodingError(f"the {response.headers.get('content-encoding')} body is damaged: {exc}") from None
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
