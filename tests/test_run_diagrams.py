"""Run-aware diagrams (`agentfsm diagram RUN`, `diagram FILE --run RUN`): the path a stored run took drawn over its
machine, read back by the real Mermaid parser and by Graphviz; pictures drawn by the local `dot`."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from agentfsm import Runs
from agentfsm.service.diagrams import draw, machine_diagram, run_diagram, run_graph
from tests.mermaid import parse_mermaid_many
from tests.services import require_binary

ROOT = Path(__file__).resolve().parent.parent
MACHINES = ROOT / "machines"

PATHS = """\
agentfsm: 1
name: paths
inputs: {mode: {type: string, default: ok}}
context: {n: 0}
tools:
  calc: {builtin: calculator}
initial: count
states:
  count:
    type: set
    set: {n: "{{ n + 1 }}"}
    next: check
  check:
    type: choice
    transitions:
      - {when: "n < 3", to: count}
      - {when: "mode == 'catch'", to: divide}
      - {when: "mode == 'crash'", to: divide unguarded}
      - {to: done}
  divide:
    type: tool
    tool: calc
    args: {expression: "1 / 0"}
    catch: [{errors: [tool], to: recover, as: problem}]
    next: done
  divide unguarded:
    type: tool
    tool: calc
    args: {expression: "1 / 0"}
    next: done
  recover:
    type: set
    set: {n: 0}
    next: gave up
  gave up: {type: fail, error: "could not divide"}
  done: {type: final, output: "{{ n }}"}
"""

# names that are syntax in Mermaid or in Graphviz's dot language, or that their escapes would eat
HOSTILE = ["plain", 'quote " mark', "back\\slash \\N \\G \\l", "semi; colon: here", "node", "edge", "subgraph",
           "-> arrow --", "{braces} [brackets]", "<b>tag</b> &amp;", "direction LR", "日本 ünï", "%%{init}%%", "end"]


def hostile_machine() -> str:
    lines = ["agentfsm: 1", "name: hostile", "context: {n: 0}", f"initial: {json.dumps(HOSTILE[0])}", "states:"]
    for here, there in pairwise(HOSTILE):
        lines += [f"  {json.dumps(here)}:", "    type: set", "    set: {n: '{{ n + 1 }}'}",
                  f"    next: {json.dumps(there)}"]
    lines += [f"  {json.dumps(HOSTILE[-1])}: {{type: final}}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One store holding a run of every shape a diagram marks, and the diagrams drawn of them."""
    folder = tmp_path_factory.mktemp("run-diagrams")
    (folder / "paths.yaml").write_text(PATHS, encoding="utf-8")
    (folder / "hostile.yaml").write_text(hostile_machine(), encoding="utf-8")
    store = f"sqlite:///{folder / 'runs.db'}"

    async def make() -> dict[str, Any]:
        async with Runs(store) as runs:
            ids = {}
            for mode in ("ok", "catch", "crash"):
                ids[mode] = (await runs.start(folder / "paths.yaml", {"mode": mode})).run_id
            waiting = (await runs.start(MACHINES / "approval.yaml", {"topic": "diagrams"})).run_id
            await runs.send(waiting, "rejected", {"comment": "shorter"})  # revise, then waits in review again
            ids["waiting"] = waiting
            paused = (await runs.start(MACHINES / "approval.yaml")).run_id
            await runs.send(paused, "approved", {"by": "ada"})
            await runs.rollback(paused, "review")  # a new branch, paused before review
            ids["paused"] = paused
            ids["team"] = (await runs.start(MACHINES / "teams" / "sequential.yaml", {"topic": "tea"})).run_id
            ids["hostile"] = (await runs.start(folder / "hostile.yaml")).run_id
            texts = {name: await run_diagram(runs, run_id) for name, run_id in ids.items()}
            texts["old branch"] = await run_diagram(runs, paused, branch="main")
            texts["from file"] = await run_diagram(runs, ids["ok"], file=folder / "paths.yaml")
            graphs = {name: await run_graph(runs, run_id) for name, run_id in ids.items()}
            dots = {name: await run_diagram(runs, run_id, "dot") for name, run_id in ids.items()}
            return {"ids": ids, "texts": texts, "graphs": graphs, "dots": dots}

    found = asyncio.run(make())
    texts = found["texts"]
    parsed = parse_mermaid_many(list(texts.values()))
    found["parsed"] = dict(zip(texts, parsed, strict=True))
    found["folder"], found["store"] = folder, store
    yield found


def names(result: dict[str, Any]) -> dict[str, str]:
    """Mermaid id -> the state's name: a choice node's is the note beside it, any other's its label's first line."""
    return {sid: result["notes"][sid] if result["shapes"][sid] == "choice" else label.split("\n")[0]
            for sid, label in result["states"].items()}


def arrows(result: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    shown = names(result)
    found: dict[tuple[str, str], list[str]] = {}
    for move in result["transitions"]:
        key = (shown.get(move["from"], move["from"]), shown.get(move["to"], move["to"]))
        found.setdefault(key, []).append(move["label"])
    return found


def classes(result: dict[str, Any]) -> dict[str, list[str]]:
    shown = names(result)
    return {shown[sid]: found for sid, found in result["classes"].items()}


def test_every_run_diagram_parses(made: dict[str, Any]) -> None:
    for name, result in made["parsed"].items():
        assert result["ok"], (name, result.get("error"), made["texts"][name])


def test_taken_arrows_carry_their_counts_and_the_others_none(made: dict[str, Any]) -> None:
    found = arrows(made["parsed"]["ok"])
    assert found[("count", "check")] == ["done (3x)"]
    assert found[("check", "count")] == ["[n < 3] (2x)"]
    assert found[("check", "done")] == ["otherwise (1x)"]
    assert found[("check", "divide")] == ["[mode == 'catch']"]  # never taken: no count
    assert made["parsed"]["from file"]["transitions"] == made["parsed"]["ok"]["transitions"]


def test_states_entered_are_marked_the_others_dimmed_and_the_end_highlighted(made: dict[str, Any]) -> None:
    result = made["parsed"]["ok"]
    marked = classes(result)
    assert marked["count"] == ["visited"] and marked["check"] == ["visited"]
    assert marked["done"] == ["ended"]
    assert {name for name, found in marked.items() if found == ["unvisited"]} == {
        "divide", "divide unguarded", "recover", "gave up"}
    assert result["states"]["s_count"] == "count\nentered 3x"


def test_a_caught_error_counts_on_its_catch_arrow_and_the_failure_is_marked(made: dict[str, Any]) -> None:
    result = made["parsed"]["catch"]
    found = arrows(result)
    assert found[("divide", "recover")] == ["error: tool (1x)"]
    assert found[("divide", "done")] == ["done"]
    assert found[("recover", "gave up")] == ["done (1x)"]
    assert classes(result)["gave up"] == ["failed"]
    crashed = classes(made["parsed"]["crash"])
    assert crashed["divide unguarded"] == ["failed"] and crashed["done"] == ["unvisited"]


def test_a_waiting_and_a_paused_run_are_marked_where_they_stand(made: dict[str, Any]) -> None:
    waiting = made["parsed"]["waiting"]
    assert classes(waiting)["review"] == ["waiting"]
    found = arrows(waiting)
    assert found[("review", "revise")] == ["rejected (1x)"] and found[("revise", "review")] == ["done (1x)"]
    assert found[("draft", "review")] == ["done (1x)"]
    assert classes(made["parsed"]["paused"])["review"] == ["paused"]
    assert arrows(made["parsed"]["paused"])[("review", "published")] == ["approved"]  # not on this branch
    old = made["parsed"]["old branch"]  # the branch it left: it went on to publish
    assert arrows(old)[("review", "published")] == ["approved (1x)"]
    assert classes(old)["published"] == ["ended"]


def test_state_kinds_are_visible(made: dict[str, Any]) -> None:
    result = made["parsed"]["ok"]
    assert result["shapes"]["s_check"] == "choice" and result["notes"]["s_check"] == "check"
    assert result["states"]["s_divide"] == "divide\ntool: calc"
    waiting = made["parsed"]["waiting"]
    assert waiting["states"]["s_review"] == "review\nwaits for: approved | rejected\ntimer: 2d\nentered 2x"
    assert waiting["states"]["s_draft"] == "draft\nllm: writer\nentered 1x"


def test_a_composite_state_says_what_the_run_did_in_its_title_never_by_a_class(made: dict[str, Any]) -> None:
    result = made["parsed"]["team"]
    composite = [sid for sid, shape in result["shapes"].items() if shape == "roundedWithTitle"
                 and sid not in result["parents"]]
    assert [result["states"][sid] for sid in composite] == ["team (team, sequential) (entered 1x)"]
    assert not set(composite) & set(result["classes"])
    assert result["classes"]["s_done"] == ["ended"]
    # each agent's child run drawn inside its region: its path, its marks
    inner = {sid: label.split("\n")[0] for sid, label in result["states"].items() if sid in result["parents"]}
    assert {"researcher", "research", "writer", "write", "editor", "edit"} <= set(inner.values())
    for agent, state in (("researcher", "research"), ("writer", "write"), ("editor", "edit")):
        (region,) = [sid for sid, name in inner.items() if name == agent]
        moves = [move for move in result["transitions"] if result["parents"].get(move["from"]) == region]
        (first,) = [move for move in moves if move["from"] != "[*]" and inner[move["from"]] == state]
        assert first["label"] == "done (1x)"
        assert result["classes"][first["from"]] == ["visited"] and result["classes"][first["to"]] == ["ended"]


def test_hostile_state_names_survive_in_mermaid(made: dict[str, Any]) -> None:
    result = made["parsed"]["hostile"]
    assert sorted(names(result).values()) == sorted(HOSTILE)
    for here, there in pairwise(HOSTILE):
        assert arrows(result)[(here, there)] == ["done (1x)"]


def svg_texts(svg: bytes) -> list[str]:
    tree = ElementTree.fromstring(svg)
    return [" ".join("".join(node.itertext()).split()) for node in tree.iter("{http://www.w3.org/2000/svg}text")]


def test_graphviz_reads_the_dot_source_with_every_hostile_name_intact(made: dict[str, Any]) -> None:
    require_binary("dot", package="graphviz")
    for name, source in made["dots"].items():
        svg = subprocess.run(["dot", "-Tsvg"], input=source.encode(), capture_output=True, check=True, timeout=60)
        assert svg.stderr == b"", (name, svg.stderr)
        texts = svg_texts(svg.stdout)
        if name == "hostile":
            assert set(HOSTILE) <= set(texts), texts
            assert texts.count("done (1x)") == len(HOSTILE) - 1
        if name == "ok":
            assert {"count", "entered 3x", "[n < 3] (2x)", "done (3x)", "tool: calc"} <= set(texts)


def test_a_png_is_a_real_picture_of_plausible_size(made: dict[str, Any]) -> None:
    require_binary("dot", package="graphviz")
    picture = draw(made["graphs"]["waiting"], "png")
    assert isinstance(picture, bytes) and picture[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture[12:16] == b"IHDR"
    width, height = struct.unpack(">II", picture[16:24])
    assert 150 <= width <= 3000 and 150 <= height <= 3000, (width, height)
    assert len(picture) > 5000
    svg = machine_diagram(MACHINES / "react_agent.yaml", "svg")
    assert isinstance(svg, bytes) and svg.lstrip().startswith(b"<?xml")
    assert "acting" in svg_texts(svg) and "tool: calculator" in svg_texts(svg)


# --- the command -------------------------------------------------------------------------------------------


def agentfsm(*args: object, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentfsm", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=60, check=False)


def test_the_command_draws_a_run_by_id_and_over_a_file(made: dict[str, Any]) -> None:
    folder, run_id = made["folder"], made["ids"]["ok"]
    by_id = agentfsm("diagram", run_id[-6:], "--store", made["store"], cwd=folder)
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.stdout == made["texts"]["ok"]
    over = agentfsm("diagram", "paths.yaml", "--run", run_id, "--store", made["store"], "-f", "dot", "-o", "p.dot",
                    cwd=folder)
    assert over.returncode == 0, over.stderr
    assert (folder / "p.dot").read_text(encoding="utf-8") == made["dots"]["ok"]


def test_bad_input_is_one_line_and_exit_2(made: dict[str, Any], tmp_path: Path) -> None:
    folder, store = made["folder"], made["store"]
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # no Graphviz on this PATH
    cases = {
        "unknown run": (["diagram", "nosuchrun", "--store", store], None, "error: no run 'nosuchrun'"),
        "no graphviz": (["diagram", made["ids"]["ok"], "--store", store, "-f", "png", "-o", "x.png"], env,
                        ("error: --format png needs Graphviz's dot, which is not on PATH: install Graphviz "
                         "(Debian/Ubuntu: apt-get install graphviz")),
        "unwritable": (["diagram", made["ids"]["ok"], "--store", store, "-o", "no/such/dir/x.mmd"], None,
                       "error: cannot write no/such/dir/x.mmd"),
        "unknown format": (["diagram", "paths.yaml", "-f", "gif"], None, ""),
        "coverage and run": (["diagram", "paths.yaml", "--run", made["ids"]["ok"], "--coverage", "c.json",
                              "--store", store], None, "error: --coverage draws a test report, --run a run"),
    }
    for name, (args, environment, start) in cases.items():
        done = agentfsm(*args, cwd=folder, env=environment)
        assert done.returncode == 2, (name, done.stderr)
        assert "Traceback" not in done.stderr and done.stdout == "", (name, done.stdout)
        if start:
            assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith(start), (name, done.stderr)
    assert not (folder / "x.png").exists()
