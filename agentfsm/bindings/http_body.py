"""Reading HTTP bodies from servers we do not control: never more than a cap, decoded size included."""

from __future__ import annotations

import codecs
import re
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
    data = bytearray()
    async for piece in decoded_pieces(response):
        data += piece
        if len(data) > cap:
            raise ReplyTooLarge()
    return bytes(data)


async def decoded_pieces(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body decoded, in pieces of at most _PIECE bytes for gzip and deflate (decompressed here, a piece at a
    time, so whoever counts them stops a compression bomb before it fills memory); others as httpx decodes."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in _ZLIB_WBITS:
        async for chunk in response.aiter_bytes():
            yield chunk
        return
    inflater = zlib.decompressobj(_ZLIB_WBITS[encoding])
    try:
        async for raw in response.aiter_raw():
            pending = raw
            while pending:
                yield inflater.decompress(pending, _PIECE)
                pending = inflater.unconsumed_tail
        yield inflater.flush()
    except zlib.error as exc:
        raise httpx.DecodingError(f"the {encoding} body is damaged: {exc}") from None


_LINE_END = re.compile(r"\r\n|\r|\n")
"""What ends a line of a server-sent event stream (nothing else does: a U+2028 in JSON data stays in its line)."""


async def body_lines(response: httpx.Response, cap: int = MAX_REPLY_BYTES) -> AsyncIterator[str]:
    """A streamed body's lines (without their ends), given up once the body passes `cap` bytes decoded.

    Only the newly received text is searched for line ends and a long line is kept in pieces, so a
    line of many megabytes costs what it holds, not its length times the pieces it came in.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    total, carry = 0, ""  # carry: a "\r" held back, perhaps the first half of a CRLF
    line: list[str] = []  # the pieces of the line being read
    async for piece in decoded_pieces(response):
        total += len(piece)
        if total > cap:
            raise ReplyTooLarge()
        text = carry + decoder.decode(piece)
        carry = "\r" if text.endswith("\r") else ""
        first, *complete = _LINE_END.split(text[:-1] if carry else text)
        line.append(first)
        if complete:
            yield "".join(line)
            *middle, last = complete
            for whole in middle:
                yield whole
            line = [last]
    lines = _LINE_END.split("".join(line) + carry + decoder.decode(b"", final=True))
    if lines[-1] == "":
        lines.pop()
    for whole in lines:
        yield whole
