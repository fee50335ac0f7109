"""`type: map`: run a machine once per item of a list, each a child run, at most `max_concurrency` at once.

The outputs are saved in item order. A failed item fails the map unless `tolerated_failures` allows it: then it
stands in the results as `{error: {...}}`; past the tolerance the remaining items are cancelled and the state
fails with `map.failed` (catchable). Children are the child runs every composite kind uses, so a map in a durable
run that crashed resumes only its unfinished items.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, StringConstraints

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.nested import compile_nested
from agentfsm.compiler.scope import compile_value, make_scope, rendered
from agentfsm.kinds.machine import inputs_renderer
from agentfsm.kinds.tool import call_tool
from agentfsm.runtime.children import LOCAL_CHILDREN, ChildRequest, Children
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import Event, State, StateContext
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import VALUE_TEMPLATE, ActiveStateSpec, Identifier, Reporter, StateName
from agentfsm.spec.nesting import NestedMachine, NestedRef

if TYPE_CHECKING:
    from agentfsm.bindings.tools import ToolClient

Percentage = Annotated[str, StringConstraints(pattern=r"^\s*\d+(\.\d+)?\s*%\s*$")]


class MapStateSpec(ActiveStateSpec):
    """Run a machine once per item of a list (each a child run), with bounded concurrency; save the outputs."""

    type: Literal["map"]
    items: Any = Field(None, description="Value template giving the list to map over.",
                       json_schema_extra=VALUE_TEMPLATE)
    tool: str | None = Field(None, description="Instead of `items:`, a tool binding whose result is the list (Step "
                             "Functions' ItemReader); called with `args` each time the state starts.")
    args: dict[str, Any] = Field(default_factory=dict, description="The `tool`'s arguments: name -> value template.",
                                 json_schema_extra=VALUE_TEMPLATE)
    select: Any = Field(None, description="With `batch_size`/`batch_bytes`: a value template applied to each item "
                        "before the items are grouped (it sees the item and `index`; Step Functions' ItemSelector "
                        "beside an ItemBatcher).", json_schema_extra=VALUE_TEMPLATE)
    batch_size: int | None = Field(None, ge=1, description="Group the items into lists of at most this many; each "
                                   "run gets one list as its item (Step Functions' ItemBatcher).")
    batch_bytes: int | None = Field(None, ge=1, description="Group the items into lists of at most this many bytes "
                                    "of JSON (an item larger than that is a list of its own).")
    machine: str | None = Field(None, description="The machine file run per item, relative to this file's folder.")
    initial: StateName | None = Field(None, description="Inline machine: its first state.")
    states: dict[str, Any] | None = Field(
        None, description="Inline machine: its states, written as a machine file's are (it shares this file's "
        "`llms:` and `tools:`).")
    context: dict[Identifier, Any] = Field(default_factory=dict, description="Inline machine: initial data.")
    item_as: Identifier = Field("item", description="The input name each run gets its item under (it also gets "
                                "`index`, the item's position from 0).")
    inputs: dict[Identifier, Any] = Field(
        default_factory=dict, description="More inputs of each run: name -> value template over this run's context "
        "(which sees the item and `index` too).", json_schema_extra=VALUE_TEMPLATE)
    max_concurrency: int = Field(10, ge=0, description="At most this many items run at once; 0: all at once.")
    tolerated_failures: Annotated[int, Field(ge=0)] | Percentage = Field(
        0, description="How many items may fail (a count, or a percentage such as `10%` of the items) before the "
        "map fails with `map.failed`; a tolerated failure stands in the results as `{error: {...}}`.")
    save: Identifier | None = Field(None, description="Context key the outputs are saved under, in item order.")

    def ref(self) -> NestedMachine:
        return NestedMachine(machine=self.machine, initial=self.initial, states=self.states, context=self.context,
                             inputs=self.inputs)

    def nested(self) -> Iterator[NestedRef]:
        yield (), self.ref(), frozenset({self.item_as, "index"})

    def names_seen_by(self, field: str) -> frozenset[str]:
        """The names a field's templates see besides the machine's: `inputs` and `select` see the item and `index`."""
        return frozenset({self.item_as, "index"}) if field in ("inputs", "select") else frozenset()

    def diagram_label(self, name: str) -> str:
        """How a diagram names the state: with its concurrency (its machine is drawn inside it)."""
        limit = "all at once" if self.max_concurrency == 0 else f"at most {self.max_concurrency} at once"
        return f"{name} (map, {limit})"

    def check(self, name: str, reporter: Reporter) -> None:
        super().check(name, reporter)
        if self.select is not None and not (self.batch_size or self.batch_bytes):
            reporter.report(("states", name, "select"), "invalid-value", f"states.{name}.select: applies to items "
                            "before they are batched; without batch_size or batch_bytes use inputs:")
        if (self.items is None) == (self.tool is None):
            reporter.report(("states", name), "missing-field" if self.items is None else "invalid-value",
                            f"states.{name}: a map takes its list from `items:` or from a `tool:`, one of them")
        if self.item_as == "index" or self.item_as in self.inputs or "index" in self.inputs:
            reporter.report(("states", name, "item_as"), "invalid-name",
                            f"states.{name}: the item's name, 'index' and the inputs' names must differ")


def allowed_failures(tolerated: int | str, count: int) -> int:
    """The number of failed items a map tolerates out of `count`."""
    if isinstance(tolerated, int):
        return tolerated
    return math.floor(count * float(tolerated.strip().rstrip("%")) / 100 + 1e-9)


class MapState(State):
    """Render the items, run one child per item (found again when the parent resumes), save outputs in order."""

    def __init__(self, name: str, machine: StateMachine, spec: MapStateSpec, reader: ToolClient | None,
                 **options: Any) -> None:
        super().__init__(name, **options)
        self.machine, self.item_as, self.save = machine, spec.item_as, spec.save
        self.items = compile_value(spec.items)
        self.reader, self.args = reader, compile_value(spec.args)
        self.select = compile_value(spec.select) if spec.select is not None else None
        self.batch = (spec.batch_size, spec.batch_bytes) if spec.batch_size or spec.batch_bytes else None
        self.inputs = inputs_renderer(spec.inputs, "inputs")
        self.max_concurrency, self.tolerated = spec.max_concurrency, spec.tolerated_failures

    async def execute(self, context: StateContext) -> Event:
        if self.reader is not None:
            items = await call_tool(context, self.name, self.reader, rendered(self.args, make_scope(context), "args"))
            if not isinstance(items, list):
                raise StateError("tool.error", f"tool {self.reader.name} gives {type(items).__name__}, not a list "
                                 "of items")
        else:
            items = rendered(self.items, make_scope(context), "items")
            if not isinstance(items, list):
                raise StateError("template.error", f"items: gives {type(items).__name__}, not a list")
        if self.batch is not None:
            if self.select is not None:
                scope = make_scope(context)
                items = [rendered(self.select, {**scope, self.item_as: item, "index": index}, "select")
                         for index, item in enumerate(items)]
            items = batches(items, *self.batch)
        requests = [self.request(context, index, item) for index, item in enumerate(items)]
        allowed = allowed_failures(self.tolerated, len(items))
        results = await run_items(context, requests, self.max_concurrency or len(items) or 1, allowed)
        outputs = [result.output if result.status == "succeeded" else {"error": result.error or {}}
                   for result in results]
        if self.save is not None:
            context.data[self.save] = outputs
        return Event("done", result=outputs)

    def request(self, context: StateContext, index: int, item: Any) -> ChildRequest:
        given = {self.item_as: item, "index": index}
        return ChildRequest(f"{self.name}[{index}]", self.machine, {**self.inputs(context, given), **given})


def batches(items: list[Any], size: int | None, limit: int | None) -> list[list[Any]]:
    """The items in order, as lists of at most `size` items and `limit` bytes of JSON each."""
    groups: list[list[Any]] = []
    used = 0
    for item in items:
        weight = len(json.dumps(item, separators=(",", ":")).encode()) if limit else 0
        if not groups or (size and len(groups[-1]) >= size) or (limit and groups[-1] and used + weight > limit):
            groups.append([])
            used = 0
        groups[-1].append(item)
        used += weight
    return groups


async def run_items(context: StateContext, requests: list[ChildRequest], limit: int, allowed: int) -> list[RunResult]:
    """Run every item (at most `limit` at once); more than `allowed` failures cancel the rest and raise
    `map.failed`. The results come back in item order."""
    children: Children = getattr(context, "children", None) or LOCAL_CHILDREN
    gate = asyncio.Semaphore(limit)

    async def one(index: int) -> tuple[int, RunResult]:
        async with gate:
            return index, await children.run(context, requests[index])

    tasks = [asyncio.ensure_future(one(index)) for index in range(len(requests))]
    results: list[RunResult | None] = [None] * len(requests)
    failed: list[int] = []
    try:
        for finished in asyncio.as_completed(tasks):
            index, result = await finished
            results[index] = result
            if result.status != "succeeded":
                failed.append(index)
                if len(failed) > allowed:
                    raise _map_failed(requests, results, failed, allowed)
    finally:
        await _cancel_unfinished(context, children, requests, tasks)
    return results  # type: ignore[return-value] - every item has ended


def _map_failed(requests: list[ChildRequest], results: list[RunResult | None], failed: list[int],
                allowed: int) -> StateError:
    first = results[failed[0]]
    error = (first.error if first is not None else None) or {}
    return StateError("map.failed", f"{len(failed)} of {len(requests)} items failed (tolerated: {allowed}); "
                      f"{requests[failed[0]].name}: {error.get('type')}: {error.get('message')}",
                      detail={"failed": sorted(failed), "tolerated": allowed, "first_error": error})


async def _cancel_unfinished(context: StateContext, children: Children, requests: list[ChildRequest],
                             tasks: list[asyncio.Future[tuple[int, RunResult]]]) -> None:
    """Stop the items still running; record them as cancelled unless the parent itself is being cancelled."""
    pending = [(request, task) for request, task in zip(requests, tasks, strict=True) if not task.done()]
    for _, task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*(task for _, task in pending), return_exceptions=True)
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        return
    for request, _ in pending:
        await children.cancel(context, request.name)


def compile_map(name: str, spec: MapStateSpec, env: CompileEnv) -> State:
    child = compile_nested(spec.ref(), name, env, (spec.item_as, "index"))
    return MapState(name, child, spec, env.tools[spec.tool] if spec.tool else None, **state_options(spec))


KIND = register(Kind("map", MapStateSpec, compile_map))
