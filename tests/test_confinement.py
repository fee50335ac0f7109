"""Commands and files stay where the machine put them (issue 9): data cannot choose a program's options,
`read_file` cannot be led outside its root (hard links, a folder swapped for a link mid-call), and a gzip
body is capped as it is decompressed."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import agentfsm
from agentfsm.bindings.builtins import FileReader
from agentfsm.bindings.http_body import ReplyTooLarge, body_lines, read_capped
from agentfsm.runtime.errors import StateError
from tests.llm_server import LLMServer, Reply

pytestmark = pytest.mark.skipif(os.name != "posix", reason="argv, links and descriptors as POSIX has them")


def write(folder: Path, tool: dict[str, Any]) -> Path:
    path = folder / "m.yaml"
    path.write_text(textwrap.dedent(f"""\
        agentfsm: 1
        name: argv
        inputs: {{v: {{type: string}}}}
        tools:
          t: {json.dumps(tool)}
        initial: call
        states:
          call: {{type: tool, tool: t, args: {{v: "{{{{ v }}}}"}}, save: r, next: end}}
          end: {{type: final, output: "{{{{ r.output }}}}"}}
        """), encoding="utf-8")
    return path


def run(path: Path, value: str) -> agentfsm.RunResult:
    return asyncio.run(agentfsm.run(path, {"v": value}))


@pytest.mark.parametrize(("command", "value"), [
    (["sort", "{{ args.v }}"], "-oPWNED"),
    (["ls", "{{ args.v }}"], "--version"),
    (["sort", "-r", "{{ args.v }}"], "--output=PWNED"),
])
def test_data_starting_with_a_dash_is_refused_as_an_option(tmp_path: Path, command: list[str], value: str) -> None:
    """With `command: [sort, "{{ args.v }}"]`, the data `-oPWNED` made sort write a file named PWNED."""
    (tmp_path / "input.txt").write_text("b\na\n", encoding="utf-8")
    result = run(write(tmp_path, {"command": command}), value)
    assert result.status == "failed" and result.error is not None
    assert result.error["type"] == "tool.bad_arguments", result.error
    assert "starts with '-'" in result.error["message"] and "options:" in result.error["message"]
    assert not (tmp_path / "PWNED").exists()


def test_an_item_listed_under_options_may_be_one(tmp_path: Path) -> None:
    printer = [sys.executable, "-c", "import sys; print(' '.join(sys.argv[1:]))"]
    result = run(write(tmp_path, {"command": [*printer, "{{ args.v }}"], "options": [3]}), "-n")
    assert (result.status, result.output) == ("succeeded", "-n")


def test_after_a_literal_double_dash_every_value_is_an_operand(tmp_path: Path) -> None:
    (tmp_path / "-oPWNED").write_text("z\ny\n", encoding="utf-8")
    result = run(write(tmp_path, {"command": ["sort", "--", "{{ args.v }}"]}), "-oPWNED")
    assert (result.status, result.output) == ("succeeded", "y\nz"), result.error
    assert not (tmp_path / "PWNED").exists()


def test_options_must_name_templates(tmp_path: Path) -> None:
    path = write(tmp_path, {"command": ["sort", "-r", "{{ args.v }}"], "options": [1]})
    checked = subprocess.run([sys.executable, "-m", "agentfsm", "validate", str(path)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 2
    assert "options: 1 is not the position of a template in command" in checked.stdout


# -- read_file ----------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """`root/` with a text file and a folder, and `outside/` with a secret, next to it."""
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "sub" / "page.txt").write_text("inside", encoding="utf-8")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "page.txt").write_text("SECRET outside", encoding="utf-8")
    return tmp_path


def test_a_hard_link_to_a_file_outside_the_root_is_refused(tree: Path) -> None:
    os.link(tree / "outside" / "page.txt", tree / "root" / "linked.txt")
    reader = FileReader((tree / "root").resolve(), 1_000_000)
    with pytest.raises(StateError) as caught:
        reader("linked.txt")
    assert caught.value.type == "tool.error"
    assert "has more than one link" in caught.value.message and "SECRET" not in caught.value.message
    assert reader("sub/page.txt") == "inside"


def test_a_folder_swapped_for_a_link_right_after_the_check_is_not_followed(
        tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race, made certain: the folder becomes a link to `outside` just after the path was resolved."""
    root = (tree / "root").resolve()
    resolve = Path.resolve

    def resolve_then_swap(self: Path, strict: bool = False) -> Path:
        resolved = resolve(self, strict=strict)
        if resolved == root / "sub" / "page.txt":
            os.rename(root / "sub", root / "parked")
            os.symlink(tree / "outside", root / "sub")
        return resolved

    monkeypatch.setattr(Path, "resolve", resolve_then_swap)
    with pytest.raises(StateError) as caught:
        FileReader(root, 1_000_000)("sub/page.txt")
    assert caught.value.type == "tool.error" and "cannot open" in caught.value.message


SWAPPER = """
import os, sys
sub, parked, outside, stop = sys.argv[1:]
link = sub + ".link"
open(stop + ".ready", "w").close()
turns = 0
while turns % 1000 or not os.path.exists(stop):
    turns += 1
    os.symlink(outside, link)
    os.rename(sub, parked)
    os.rename(link, sub)  # the folder is a link to `outside` now
    os.unlink(sub)
    os.rename(parked, sub)  # and the folder again
"""


def test_a_folder_swapped_for_a_link_between_check_and_open_is_never_followed(tree: Path) -> None:
    """A race swapping a folder for a symlink returned a file outside the root in 13,664 of 200,000 calls;
    here a process swaps it as fast as it can while the reads go on."""
    root = (tree / "root").resolve()
    stop = tree / "stop"
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(root / "sub"), str(root / "parked"),
                                str(tree / "outside"), str(stop)])
    reader = FileReader(root, 1_000_000)
    outcomes: dict[str, int] = {}
    try:
        while swapper.poll() is None and not Path(f"{stop}.ready").exists():
            time.sleep(0.01)
        for _ in range(3000):
            try:
                text = reader("sub/page.txt")
            except StateError as exc:
                text = exc.type
            outcomes[text] = outcomes.get(text, 0) + 1
    finally:
        stop.touch()
        swapper.wait(30)
    assert "SECRET outside" not in outcomes, outcomes
    assert outcomes.get("inside", 0) > 0, outcomes


# -- gzip bodies ----------------------------------------------------------------------------------


def test_a_gzip_bomb_is_capped_as_it_is_decompressed(server: LLMServer) -> None:
    """A 200 MB bomb raised peak memory from 51 to 180 MB: each received chunk was inflated whole first."""
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)
    server.script(Reply(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}))

    async def read() -> int:
        async with httpx.AsyncClient() as client, client.stream("POST", server.url + "/bomb") as response:
            tracemalloc.start()
            try:
                with pytest.raises(ReplyTooLarge):
                    await read_capped(response, 1024 * 1024)
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

    peak = asyncio.run(read())
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MB while reading a body capped at 1 MB"


def test_an_ordinary_gzip_body_reads_whole(server: LLMServer) -> None:
    body = json.dumps({"items": list(range(50_000))}).encode()
    server.script(Reply(body=gzip.compress(body), headers={"Content-Encoding": "gzip"}))

    async def read() -> bytes:
        async with httpx.AsyncClient() as client, client.stream("POST", server.url + "/ok") as response:
            return await read_capped(response, 10 * 1024 * 1024)

    assert asyncio.run(read()) == body


def test_a_streamed_gzip_bomb_is_capped_as_it_is_decompressed(server: LLMServer) -> None:
    """The same bomb as a stream of server-sent events: its lines are counted as they are inflated."""
    bomb = gzip.compress(b"data: {}\n\n" * (20 * 1024 * 1024), compresslevel=9)
    server.script(Reply(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "text/event-stream"}))

    async def read() -> tuple[int, int]:
        lines = 0
        async with httpx.AsyncClient() as client, client.stream("POST", server.url + "/bomb") as response:
            tracemalloc.start()
            try:
                with pytest.raises(ReplyTooLarge):
                    async for _ in body_lines(response, 1024 * 1024):
                        lines += 1
                return lines, tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

    lines, peak = asyncio.run(read())
    assert 100_000 < lines < 300_000  # about a megabyte of `data: {}` lines, then refused
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MB while reading a stream capped at 1 MB"


def test_stream_lines_split_on_every_line_end_even_across_pieces(server: LLMServer) -> None:
    body = b"data: a\r\n\r\ndata: \xe2\x80\xa8b\r" + b"\n\nevent: end\ndata: c"
    server.script(Reply(body=gzip.compress(body), headers={"Content-Encoding": "gzip"}))

    async def read() -> list[str]:
        async with httpx.AsyncClient() as client, client.stream("POST", server.url + "/ok") as response:
            return [line async for line in body_lines(response)]

    assert asyncio.run(read()) == ["data: a", "", "data: \u2028b", "", "event: end", "data: c"]


def test_stream_lines_join_a_line_that_arrives_in_many_pieces() -> None:
    pieces = [b"data: a\r", b"\nda", b"ta: ", b"b" * 70_000, b"c\r", b"\r\n", b"\xe2\x80", b"\xa8d\n", b"\n", b"e"]

    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    async def read() -> list[str]:
        return [line async for line in body_lines(httpx.Response(200, content=body()))]

    assert asyncio.run(read()) == ["data: a", "data: " + "b" * 70_000 + "c", "", "\u2028d", "", "e"]
