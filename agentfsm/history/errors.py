"""The history layer's refusal (importing it costs nothing: front ends catch it without loading the layer)."""

from __future__ import annotations

from agentfsm.store.base import Conflict


class RunRefused(Conflict):
    """A request that does not fit the run as it is (resume a finished run, roll back to an unknown point...)."""
