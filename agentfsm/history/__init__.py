"""Durable runs over a store: recording, resuming, waiting, rolling back, branching, comparing."""

from agentfsm.history.runs import Rollback, RunHandle, RunRefused, Runs

__all__ = ["Rollback", "RunHandle", "RunRefused", "Runs"]
