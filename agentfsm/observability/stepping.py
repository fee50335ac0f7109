"""`--step`: before each state, ask the person at the terminal what to do.

Enter (or `s`) runs the state and asks again before the next; `c` runs on without asking (breakpoints
still stop it); `x` shows the context; `l` the last LLM exchange; `set KEY=JSON` sets a value of the
context before the state runs; `b STATE[:GUARD]` adds a breakpoint; `q` stops the run before the state,
left `paused` for `agentfsm resume`. The stepper is an observer: it pauses the run the way a breakpoint
does (`PauseRun`), and sets values on the context of the run whose loop calls it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from agentfsm.bindings.known_secrets import redact
from agentfsm.bindings.llm import reply_json, request_json
from agentfsm.observability.debugging import shown_value
from agentfsm.observability.terminal import visible
from agentfsm.runtime.breakpoints import Breakpoint, Breakpoints
from agentfsm.runtime.events import LLMCallEnded, StepStarted
from agentfsm.runtime.pausing import PauseRun, running_context

HELP = """\
  Enter, s   run this state, then ask again
  c          continue: run on without asking (breakpoints still stop the run)
  x          show the context
  l          show the last LLM exchange
  set K=JSON set the context's K to a JSON value before the state runs
  b S[:G]    add a breakpoint: pause before state S (when the guard G holds)
  q          quit: the run stays paused here; agentfsm resume RUN continues it"""

SHOWN = 2000
"""Characters of a prompt or a reply `l` shows."""


class Stepper:
    """An observer asking `ask(prompt)` before each state and answering through `say`.

    `read_breakpoint` turns `STATE[:GUARD]` into a breakpoint of the run's machine (raising with a one-line
    reason when it is not one); breakpoints added here are kept in `added` for the caller to store."""

    critical = False

    def __init__(self, ask: Callable[[str], str | None], say: Callable[[str], None],
                 read_breakpoint: Callable[[str], Breakpoint]) -> None:
        self.ask, self.say, self.read_breakpoint = ask, say, read_breakpoint
        self.stepping = True
        self.own = Breakpoints()
        self.added: list[str] = []
        self.last_llm: LLMCallEnded | None = None

    def on_llm_call_ended(self, *, event: LLMCallEnded) -> None:
        self.last_llm = event

    async def on_step_started(self, *, event: StepStarted) -> None:
        if not self.stepping:
            await self.own.on_step_started(event=event)
            return
        while True:
            answer = self.ask(f"before '{event.state}' (step {event.step}) [Enter step, c, x, l, set, b, q, ?] ")
            if answer is None:  # end of input (Ctrl-D): as `q`
                raise PauseRun("step")
            if self.act(answer.strip(), event):
                return

    def act(self, answer: str, event: StepStarted) -> bool:
        """Do what `answer` asks; True when the state should run now."""
        word, _, rest = answer.partition(" ")
        if word in ("", "s", "step"):
            return True
        if word in ("c", "continue"):
            self.stepping = False
            return True
        if word in ("q", "quit"):
            raise PauseRun("step")
        if word in ("x", "context"):
            self.say(visible_block(json.dumps(dict(event.data), ensure_ascii=False, indent=2, default=repr)))
        elif word in ("l", "llm"):
            self.show_llm()
        elif word == "set":
            self.set_value(rest.strip())
        elif word in ("b", "break"):
            self.add_breakpoint(rest.strip())
        else:
            self.say(HELP if word in ("?", "h", "help") else f"unknown command '{visible(word)}' (? for help)")
        return False

    def set_value(self, text: str) -> None:
        key, equals, raw = text.partition("=")
        key = key.strip()
        if not equals or not key:
            self.say("usage: set KEY=JSON (set n=3, set note=\"text\")")
            return
        try:
            value = json.loads(raw)
        except ValueError as exc:
            self.say(f"set {visible(key)}: not JSON: {exc}")
            return
        context = running_context()
        if context is None:
            self.say("no run to set a value on")
            return
        context.data[key] = value
        self.say(f"{visible(key)} = {shown_value(value)}")

    def add_breakpoint(self, text: str) -> None:
        try:
            breakpoint = self.read_breakpoint(text)
        except Exception as exc:  # noqa: BLE001 - a bad breakpoint is said, and asked again
            self.say(str(exc))
            return
        self.own.add(breakpoint)
        if breakpoint.text not in self.added:
            self.added.append(breakpoint.text)
        self.say(f"breakpoint {visible(breakpoint.text)}")

    def show_llm(self) -> None:
        event = self.last_llm
        if event is None:
            self.say("no LLM call yet in this session")
            return
        record = event.record
        self.say(f"{record.binding} ({record.model}) in state '{event.state}', step {event.step}:")
        if event.request is not None:
            messages = request_json(event.request, record.model)["messages"]
            if messages:
                self.say(f"  asked: {_cut(str(messages[-1].get('content')))}")
        if event.reply is not None:
            reply = reply_json(event.reply)
            self.say(f"  reply: {_cut(str(reply.get('text') or ''))}")
            for call in reply.get("tool_calls") or []:
                self.say(f"  tool call: {_cut(json.dumps(call, ensure_ascii=False, default=repr))}")
        elif record.error is not None:
            self.say(f"  error: {_cut(str(record.error))}")


def _cut(text: str) -> str:
    text = visible(redact(text))
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


def visible_block(text: str) -> str:
    """Several lines shown as they are, secrets and control characters (but the line breaks) out."""
    return "\n".join(visible(redact(line)) for line in text.splitlines())

