"""What compiling one state needs: the machine's bindings, its folder, and the options every state has."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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


def state_options(spec: StateSpec) -> dict[str, Any]:
    """The runtime `State` options every kind takes: description, visits, checkpoint; timeout, retry, catch."""
    options: dict[str, Any] = {"description": spec.description, "max_visits": spec.max_visits,
                               "checkpoint": spec.checkpoint}
    if isinstance(spec, ActiveStateSpec):
        options["timeout"] = spec.timeout
        options["retry"] = [
            RetryRule(tuple(r.errors), r.interval, r.max_attempts, r.backoff_rate, r.max_delay, r.jitter)
            for r in spec.retry
        ]
        options["catch"] = [CatchRule(tuple(c.errors), c.to, c.as_) for c in spec.catch]
    return options
