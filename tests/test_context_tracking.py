"""How a recorded run stores its context step by step, and what a run resumed from the store gets back.

A list or dict big enough to be worth it is tracked (replaced by a copy that notes its own
changes), so the store receives only what changed; these tests check, through `Runs`, what
is stored for each kind of change and that every point of a run rebuilds to exactly the
context the run had there, JSON types included (`1`, `1.0` and `True` differ).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import random
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from agentfsm import Event, RetryRule, Runs, State, StateContext, StateMachine, StepEnded
from agentfsm.history import deltas
from agentfsm.history.deltas import ContextTracker, rebuild
from agentfsm.store.base import StepRow

Change = Callable[[dict[str, Any]], None]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def message(number: int, text: str = "") -> dict[str, Any]:
    """A chat message; twenty of them make a list big enough to be tracked."""
    return {"role": "user" if number % 2 else "assistant", "content": text or f"message {number}: " + "words " * 12}


def transcript(length: int = 20) -> list[dict[str, Any]]:
    return [message(number) for number in range(length)]


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON, types included (any list equals any list, any dict any dict)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


class Script(State):
    """Applies one change per step (change k at step k), then ends."""

    def __init__(self, changes: list[Change]) -> None:
        super().__init__("work")
        self.changes = changes

    async def execute(self, context: StateContext) -> Event:
        self.changes[context.step - 1](context.data)
        return Event("more" if context.step < len(self.changes) else "enough")


def scripted(changes: list[Change], context: dict[str, Any] | None = None) -> StateMachine:
    machine = StateMachine("scripted", max_steps=len(changes) + 5)
    machine.initial_data = copy.deepcopy(context or {})
    machine.add_state(Script(changes), initial=True)
    machine.add_state(State("end"), final=True)
    machine.add_transition("work", "work", "more")
    machine.add_transition("work", "end", "enough")
    return machine


class Contexts:
    """An observer keeping a plain copy of the context after every step."""

    def __init__(self) -> None:
        self.after: dict[int, Any] = {}

    def on_step_ended(self, *, event: StepEnded) -> None:
        self.after[event.step] = copy.deepcopy(dict(event.data))


class Crash(BaseException):
    """The process dying: raised by an observer right after step `step` was committed."""

    def __init__(self, step: int) -> None:
        super().__init__(f"died after step {step}")
        self.step = step

    def on_step_ended(self, *, event: StepEnded) -> None:
        if event.step == self.step:
            raise self


def stored(runs: Runs, run_id: str) -> list[Any]:
    """What the store holds for each step's context: None (unchanged), the patch's operations, or ("snapshot", ...)."""
    return [None if row.context_kind is None else json.loads(row.context or "") if row.context_kind == "patch"
            else ("snapshot", json.loads(row.context or "")) for row in run(runs.history(run_id))]


def at_point(runs: Runs, run_id: str, point: str) -> dict[str, Any]:
    """The context a run had at a point (`3`, `head`...), rebuilt from the store."""
    return run(runs.position(run_id, run(runs.point(run_id, point)))).data


def assert_every_point(runs: Runs, run_id: str, seen: Contexts) -> None:
    """Point k+1 (just before step k+1) holds exactly the context the run had after step k."""
    for step, data in seen.after.items():
        rebuilt = at_point(runs, run_id, str(step + 1))
        assert same_json(rebuilt, data), (step, rebuilt, data)


# -- what is stored for each kind of change -----------------------------------------------------------


def test_each_appended_message_is_stored_as_one_add_however_long_the_transcript(runs: Runs) -> None:
    def append(data: dict[str, Any]) -> None:
        data["messages"].append(message(len(data["messages"])))

    seen = Contexts()
    result = run(runs.start(scripted([append] * 30, {"messages": transcript(20)}), observers=[seen]))
    assert result.status == "succeeded"
    patches = stored(runs, result.run_id)[:30]
    for number, operations in enumerate(patches, start=20):
        assert operations == [{"op": "add", "path": f"/messages/{number}", "value": message(number)}]
    assert_every_point(runs, result.run_id, seen)


def test_a_big_value_that_does_not_change_is_not_stored_again(runs: Runs) -> None:
    def count(data: dict[str, Any]) -> None:
        data["n"] += 1

    result = run(runs.start(scripted([count] * 5, {"n": 0, "documents": transcript(200)})))
    assert stored(runs, result.run_id) == [[{"op": "replace", "path": "/n", "value": n}] for n in range(1, 6)] + [None]


def test_changes_inside_a_big_value_are_stored_where_they_happened(runs: Runs) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["messages"][3]["content"] = "edited"
        data["messages"][5]["tags"] = ["a"]

    def nested(data: dict[str, Any]) -> None:
        data["messages"][5]["tags"].append("b")
        del data["messages"][3]["role"]

    def reorder(data: dict[str, Any]) -> None:
        data["messages"].insert(1, message(99))
        data["messages"].pop(10)

    def swap(data: dict[str, Any]) -> None:
        data["state"]["phase"] = "done"
        data["state"].pop("attempts")

    seen = Contexts()
    state = {"phase": "start", "attempts": 1, "notes": transcript(20)}
    machine = scripted([edit, nested, reorder, swap], {"messages": transcript(20), "state": state})
    result = run(runs.start(machine, observers=[seen]))
    assert result.status == "succeeded"
    patches = stored(runs, result.run_id)
    assert patches[0] == [{"op": "replace", "path": "/messages/3/content", "value": "edited"},
                          {"op": "add", "path": "/messages/5/tags", "value": ["a"]}]
    assert patches[1] == [{"op": "remove", "path": "/messages/3/role"},
                          {"op": "add", "path": "/messages/5/tags/1", "value": "b"}]
    assert len(patches[2]) <= 4 and all(len(json.dumps(op)) < 300 for op in patches[2])  # not the whole list
    assert patches[3] == [{"op": "replace", "path": "/state/phase", "value": "done"},
                          {"op": "remove", "path": "/state/attempts"}]
    assert_every_point(runs, result.run_id, seen)


def test_a_change_below_a_copied_container_is_stored(runs: Runs) -> None:
    def tag(data: dict[str, Any]) -> None:
        data["messages"][0]["tags"].append("seen")
        data["messages"][0] = dict(data["messages"][0])  # a new dict sharing the changed list

    def tag_again(data: dict[str, Any]) -> None:
        tags = data["messages"][0]["tags"]
        tags.append("again")
        data["messages"] = [{**data["messages"][0]}, *data["messages"][1:]]

    seen = Contexts()
    start = {"messages": [{**message(0), "tags": []}, *transcript(20)]}
    result = run(runs.start(scripted([tag, tag_again], start), observers=[seen]))
    assert stored(runs, result.run_id)[:2] == [[{"op": "add", "path": "/messages/0/tags/0", "value": "seen"}],
                                               [{"op": "add", "path": "/messages/0/tags/1", "value": "again"}]]
    assert_every_point(runs, result.run_id, seen)


def test_a_list_rebuilt_from_its_own_items_stores_only_what_is_new(runs: Runs) -> None:
    def grow(data: dict[str, Any]) -> None:
        data["messages"] = data["messages"] + [message(len(data["messages"]))]

    def prepend(data: dict[str, Any]) -> None:
        data["messages"] = [message(-1)] + data["messages"]

    def copy_then_grow(data: dict[str, Any]) -> None:
        data["messages"] = [*data["messages"], message(0, "last")]

    seen = Contexts()
    result = run(runs.start(scripted([grow, grow, prepend, copy_then_grow], {"messages": transcript(20)}),
                            observers=[seen]))
    patches = stored(runs, result.run_id)
    assert patches[0] == [{"op": "add", "path": "/messages/20", "value": message(20)}]
    assert patches[1] == [{"op": "add", "path": "/messages/21", "value": message(21)}]
    assert patches[2] == [{"op": "add", "path": "/messages/0", "value": message(-1)}]
    assert patches[3] == [{"op": "add", "path": "/messages/23", "value": message(0, "last")}]
    assert_every_point(runs, result.run_id, seen)


def test_a_value_replaced_by_an_equal_value_of_another_type_is_stored(runs: Runs) -> None:
    def retype(data: dict[str, Any]) -> None:
        data["flag"] = True  # was 1
        data["messages"][0]["score"] = 1.0  # was 1
        data["messages"][1] = {**data["messages"][1], "score": False}  # was 0

    start = {"flag": 1, "messages": [{**message(0), "score": 1}, {**message(1), "score": 0}, *transcript(20)]}
    seen = Contexts()
    result = run(runs.start(scripted([retype, lambda data: None], start), observers=[seen]))
    assert stored(runs, result.run_id)[0] == [
        {"op": "replace", "path": "/flag", "value": True},
        {"op": "replace", "path": "/messages/0/score", "value": 1.0},
        {"op": "replace", "path": "/messages/1/score", "value": False},
    ]
    assert_every_point(runs, result.run_id, seen)
    head = at_point(runs, result.run_id, "head")
    assert type(head["flag"]) is bool and type(head["messages"][0]["score"]) is float


def test_removed_keys_and_values_that_change_kind(runs: Runs) -> None:
    def drop(data: dict[str, Any]) -> None:
        del data["messages"]
        data["log"] = "a string now"

    def back(data: dict[str, Any]) -> None:
        data["messages"] = transcript(25)
        data["log"] = {"entries": transcript(20)}

    seen = Contexts()
    result = run(runs.start(scripted([drop, back], {"messages": transcript(20), "log": transcript(20)}), observers=[seen]))
    patches = stored(runs, result.run_id)
    assert patches[0] == [{"op": "remove", "path": "/messages"},
                          {"op": "replace", "path": "/log", "value": "a string now"}]
    assert_every_point(runs, result.run_id, seen)


def test_a_yaml_transcript_grown_by_set_stores_one_add_per_step(runs: Runs, tmp_path: Path) -> None:
    path = tmp_path / "chat.yaml"
    path.write_text(textwrap.dedent("""\
        agentfsm: 1
        name: chat
        context:
          turn: 0
          messages: []
        initial: say
        states:
          say:
            type: set
            set:
              messages: "{{ messages + [{'role': 'user', 'content': 'turn ' ~ turn ~ ' ' ~ ('lorem ' * 30)}] }}"
              turn: "{{ turn + 1 }}"
            transitions:
              - {when: "turn < 40", to: say}
              - {to: done}
          done:
            type: final
            output: "{{ messages | length }}"
        """))
    seen = Contexts()
    result = run(runs.start(path, observers=[seen]))
    assert result.status == "succeeded" and result.output == 40
    patches = [patch for patch in stored(runs, result.run_id) if patch and patch[0] != "snapshot"]
    grown = [[op for op in patch if op["path"].startswith("/messages")] for patch in patches]
    assert all(len(ops) == 1 and ops[0]["op"] == "add" for ops in grown)
    assert_every_point(runs, result.run_id, seen)


# -- values that are not JSON, and values JSON holds differently --------------------------------------


def test_a_value_that_is_not_json_inside_a_big_list_fails_the_run_naming_the_key(runs: Runs) -> None:
    def stamp(data: dict[str, Any]) -> None:
        data["messages"].append({"at": datetime.datetime(2024, 1, 1)})

    result = run(runs.start(scripted([lambda data: None, stamp, lambda data: None], {"messages": transcript(20)})))
    assert result.status == "failed"
    assert result.error["type"] == "context.not_json" and "'messages'" in result.error["message"]
    assert [row.step for row in run(runs.history(result.run_id))] == [1]


def test_tuples_and_keys_that_are_not_strings_are_stored_as_json_has_them(runs: Runs) -> None:
    def odd(data: dict[str, Any]) -> None:
        data["messages"].append(("user", "hi"))
        data["messages"][0][7] = "seven"

    def more(data: dict[str, Any]) -> None:
        data["messages"].append(message(1))

    result = run(runs.start(scripted([odd, more, more], {"messages": transcript(20)})))
    assert result.status == "succeeded"
    head = at_point(runs, result.run_id, "head")
    assert head["messages"][20] == ["user", "hi"] and len(head["messages"]) == 23
    assert head["messages"][0]["7"] == "seven"
    top = run(runs.start(scripted([lambda data: data.update({8: "eight"}), lambda data: None])))
    assert top.status == "failed" and top.error["type"] == "context.not_json" and "8" in top.error["message"]


# -- resuming -----------------------------------------------------------------------------------------


def _changes() -> list[Change]:
    """Every kind of change, on values big enough to be tracked."""

    def step(k: int) -> Change:
        def change(data: dict[str, Any]) -> None:
            messages, memory = data["messages"], data["memory"]
            if k % 5 == 0:
                messages.append(message(k))
            elif k % 5 == 1:
                messages[-1]["content"] += f" (edited at {k})"
                memory["facts"].append({"k": k, "true": k % 2 == 0})
            elif k % 5 == 2:
                data["messages"] = messages + [message(k), message(k + 1)]
                memory["counter"] = memory.get("counter", 0) + (1.0 if k % 4 else 1)
            elif k % 5 == 3:
                messages.insert(2, messages.pop())
                memory["facts"][0]["true"] = 1  # True -> 1
            else:
                del messages[0]
                memory.pop("counter", None)
                data["extra"] = {"k": k, "list": transcript(k % 3)}

        return change

    return [step(k) for k in range(20)]


def test_a_run_resumed_after_a_crash_has_exactly_the_context_of_an_uninterrupted_run(runs: Runs) -> None:
    start = {"messages": transcript(20), "memory": {"facts": [{"k": -1, "true": True}], "notes": transcript(20)}}
    whole = run(runs.start(scripted(_changes(), start)))
    machine = scripted(_changes(), start)
    with pytest.raises(Crash):
        run(runs.start(machine, observers=[Crash(7)], run_id="crashed"))
    seen = Contexts()
    resumed = run(runs.resume("crashed", machine=machine, observers=[seen]))
    assert resumed.status == whole.status == "succeeded"
    assert same_json(resumed.context.data, whole.context.data)
    assert min(seen.after) == 8
    assert_every_point(runs, "crashed", seen)
    for point in (1, 5, 9, 15, 21):
        assert same_json(at_point(runs, "crashed", str(point)), at_point(runs, whole.run_id, str(point))), point


def test_every_point_rebuilds_across_snapshots(db: Path) -> None:
    runs = Runs(f"sqlite:///{db}", snapshot_every=3)
    seen = Contexts()
    start = {"messages": transcript(20), "memory": {"facts": [], "notes": transcript(20)}}
    result = run(runs.start(scripted(_changes(), start), observers=[seen]))
    kinds = [row.context_kind for row in run(runs.history(result.run_id))]
    assert kinds.count("snapshot") >= 3 and "patch" in kinds
    assert_every_point(runs, result.run_id, seen)
    run(runs.close())


def test_a_retried_step_stores_what_the_run_kept(runs: Runs) -> None:
    class Flaky(State):
        """Appends a message, fails on its first attempt, then succeeds."""

        def __init__(self) -> None:
            super().__init__("flaky", retry=[RetryRule(max_attempts=2, interval=0)])
            self.attempts = 0

        async def execute(self, context: StateContext) -> None:
            self.attempts += 1
            context.data["messages"].append(message(self.attempts))
            context.data["tries"] = self.attempts
            if self.attempts == 1:
                raise RuntimeError("flaky")

    def machine() -> StateMachine:
        built = StateMachine("flaky")
        built.initial_data = {"messages": transcript(20)}
        built.add_state(Flaky(), initial=True)
        built.add_state(State("end"), final=True)
        built.add_transition("flaky", "end")
        return built

    in_memory = run(machine().run())
    seen = Contexts()
    recorded = run(runs.start(machine(), observers=[seen]))
    assert recorded.status == in_memory.status == "succeeded"
    assert same_json(recorded.context.data, in_memory.context.data)
    assert_every_point(runs, recorded.run_id, seen)


# -- the tracked values themselves ---------------------------------------------------------------------


def test_tracked_values_behave_as_lists_and_dicts(runs: Runs) -> None:
    looked: dict[str, Any] = {}

    def look(data: dict[str, Any]) -> None:
        messages = data["messages"]
        looked["isinstance"] = isinstance(messages, list) and isinstance(messages[0], dict)
        looked["equal"] = messages == transcript(20)
        looked["json"] = json.loads(json.dumps(messages)) == transcript(20)
        deep = copy.deepcopy(messages)
        looked["deepcopy"] = type(deep) is list and type(deep[0]) is dict and deep == messages
        looked["copy"] = type(copy.copy(messages)) is list and type(messages[0].copy()) is dict
        looked["slice"] = type(messages[:2]) is list
        looked["pydantic"] = TypeAdapter(list[dict[str, str]]).validate_python(messages) == transcript(20)

    result = run(runs.start(scripted([lambda data: None, look], {"messages": transcript(20)})))
    assert result.status == "succeeded"
    assert looked == dict.fromkeys(("isinstance", "equal", "json", "deepcopy", "copy", "slice", "pydantic"), True)


def test_release_gives_back_plain_lists_and_dicts() -> None:
    data: dict[str, Any] = {"messages": transcript(20), "n": 1}
    tracker = ContextTracker(data)
    data["messages"].append(message(20))
    assert tracker.change(data)[0] == "patch"
    assert type(data["messages"]) is not list  # tracked while the run goes on
    tracker.release(data)
    assert type(data["messages"]) is list and all(type(item) is dict for item in data["messages"])
    assert same_json(data, {"messages": transcript(21), "n": 1})


def test_a_tracker_told_not_to_track_leaves_the_values_alone() -> None:
    messages = transcript(20)
    data: dict[str, Any] = {"messages": messages}
    tracker = ContextTracker(data, track=False)
    rows = [StepRow("main", 0, None, context_kind="snapshot", context=tracker.snapshot())]
    for number in range(20, 23):
        messages.append(message(number))  # the caller's own list, held across changes
        kind, text = tracker.change(data)
        assert json.loads(text or "") == [{"op": "add", "path": f"/messages/{number}", "value": message(number)}]
        rows.append(StepRow("main", number, "s", context_kind=kind, context=text))
    assert data["messages"] is messages and type(messages) is list
    assert same_json(rebuild(list(reversed(rows)))[0], {"messages": transcript(23)})


# -- the tracker against random changes ----------------------------------------------------------------

ATOMS = (0, 1, True, False, 1.0, 0.5, "1", "x", None, "", -3)


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.random()
    if depth > 2 or pick < 0.5:
        return rng.choice(ATOMS)
    if pick < 0.75:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice("abc~/"): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _containers(value: Any, found: list[Any]) -> list[Any]:
    if isinstance(value, list | dict):
        found.append(value)
        for item in value.values() if isinstance(value, dict) else value:
            _containers(item, found)
    return found


def _mutate(rng: random.Random, data: dict[str, Any]) -> None:
    """One random change: keys replaced, removed, rebuilt; containers edited, moved or shared."""
    pick = rng.random()
    if not data or pick < 0.1:
        data[rng.choice("mnop")] = _value(rng)
        return
    key = rng.choice(list(data))
    if pick < 0.15:
        del data[key]
    elif pick < 0.2:
        data[key] = rng.choice(ATOMS)
    elif pick < 0.3 and isinstance(data[key], list):
        data[key] = data[key] + [_value(rng)] if pick < 0.25 else [_value(rng), *data[key]]
    elif candidates := _containers(data[key], []):
        target = rng.choice(candidates)
        item = _value(rng)
        shared = _containers(data[rng.choice(list(data))], [])
        if shared and rng.random() < 0.2 and all(c is not target for c in _containers(shared[-1], [])):
            item = shared[-1]  # moved or shared: the same object in two places
        _edit(rng, target, item)


def _edit(rng: random.Random, target: list[Any] | dict[str, Any], item: Any) -> None:
    if isinstance(target, list):
        size = len(target)
        edits: list[Callable[[], Any]] = [
            lambda: target.append(item), lambda: target.extend([item, 1]), lambda: target.reverse(),
            lambda: target.insert(rng.randint(0, size), item), lambda: target.__iadd__([item]),
        ]
        if size:
            index = rng.randrange(size)
            edits += [lambda: target.pop(index), lambda: target.__setitem__(index, item),
                      lambda: target.__delitem__(index), lambda: target.__setitem__(slice(0, index), [item]),
                      lambda: target.clear()]
    else:
        key = rng.choice("abc~/")
        edits = [lambda: target.__setitem__(key, item), lambda: target.pop(key, None),
                 lambda: target.update({key: item}), lambda: target.setdefault(key, item),
                 lambda: target.__ior__({key: 1.0})]
        if target:
            edits += [lambda: target.popitem(), lambda: target.clear()]
    rng.choice(edits)()


@pytest.mark.parametrize("track_from", [0, 40, deltas.TRACK_FROM])
@pytest.mark.parametrize("seed", range(15))
def test_random_changes_rebuild_exactly(seed: int, track_from: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deltas, "TRACK_FROM", track_from)  # 0: every list and dict is tracked
    rng = random.Random(seed)
    data: dict[str, Any] = {"m": _value(rng), "n": [_value(rng) for _ in range(3)], "o": {"k": [1, 2]}}
    tracker = ContextTracker(data, snapshot_every=rng.choice([3, 50]))
    rows = [StepRow("main", 0, None, context_kind="snapshot", context=tracker.snapshot())]
    expected = [copy.deepcopy(data)]
    for step in range(1, 40):
        before = dict(data) if rng.random() < 0.2 else None
        for _ in range(rng.randint(0, 4)):
            _mutate(rng, data)
        if before is not None and rng.random() < 0.5:  # a failed attempt: the loop puts the keys back
            data.clear()
            data.update(before)
        kind, text = tracker.change(data)
        rows.append(StepRow("main", step, "s", context_kind=kind, context=text))
        expected.append(copy.deepcopy(data))
    for step, context in enumerate(expected):
        newest: list[StepRow] = []
        for row in reversed(rows[:step + 1]):
            newest.append(row)
            if row.context_kind == "snapshot":
                break
        assert same_json(rebuild(newest)[0], context), step
