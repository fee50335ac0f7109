"""What compiling one state needs: the machine's bindings, its folder, its settings, and the options every state has."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentfsm.runtime.model import CatchRule, RetryRule
from agentfsm.spec.models import ActiveStateSpec, StateSpec

if TYPE_CHECKING:
    from agentfsm.bindings.llm import LLMClient
    from agentfsm.bindings.tools import ToolClient


@dataclass(frozen=True, slots=True)
class CompileEnv:
    """The LLM and tool clients of a machine (made when its run starts) and the folder of its file."""

    llms: Mapping[str, LLMClient]
    tools: Mapping[str, ToolClient]
    base_dir: Path
    loaded: Any = None
    """The `LoadedSpec` being compiled (nested machines resolve files next to it and share its bindings)."""
    overrides: Mapping[str, str] = field(default_factory=dict)
    """`--llm` overrides: they apply to nested machines too, to each binding of that name."""
    used: set[str] = field(default_factory=set)
    """The override names some machine of the run has (one no machine has is refused)."""
    inline_wait: float = 60.0
    """A timer due within this many seconds is slept through in the process (the machine's `inline_wait`)."""


def state_options(spec: StateSpec) -> dict[str, Any]:
    """The runtime `State` options every kind takes: description, visits, checkpoint; timeout, retry, catch."""
    options: dict[str, Any] = {"description": spec.description, "max_visits": spec.max_visits,
                               "checkpoint": spec.checkpoint}
    if isinstance(spec, ActiveStateSpec):
        options["timeout"] = spec.timeout if not isinstance(spec.timeout, str) else None  # a template: build.py
        options["retry"] = [
            RetryRule(tuple(r.errors), r.interval, r.max_attempts, r.backoff_rate, r.max_delay, r.jitter)
            for r in spec.retry
        ]
        options["catch"] = [CatchRule(tuple(c.errors), c.to, c.as_) for c in spec.catch]
    return options
