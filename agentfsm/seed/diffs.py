"""`DiffTracker`: the seed's comparison of two contexts or two snapshots, over the history layer's diff.

The keys compared, and what counts as a change (a value of another JSON type too: `1` and
`true` differ), are those of `agentfsm diff RUN A B`.
"""

from __future__ import annotations

from typing import Any

from agentfsm.history.diff import compare_data
from agentfsm.runtime.model import StateContext
from agentfsm.seed.snapshots import StateSnapshot


class DiffTracker:
    """What changed between two contexts, or two snapshots."""

    @staticmethod
    def diff_contexts(old_context: StateContext, new_context: StateContext) -> dict[str, Any]:
        """`data_changes` (key -> old, new, action: added, removed or modified), `metadata_changes`
        (key -> old, new) and `new_transitions` (those `new_context.history` has beyond `old_context`'s)."""
        added, removed, changed = compare_data(old_context.data, new_context.data)
        data_changes: dict[str, Any] = {key: {"old": None, "new": value, "action": "added"}
                                        for key, value in added.items()}
        data_changes.update({key: {"old": value, "new": None, "action": "removed"} for key, value in removed.items()})
        data_changes.update({key: {**change, "action": "modified"} for key, change in changed.items()})
        meta_added, meta_removed, meta_changed = compare_data(old_context.metadata, new_context.metadata)
        metadata_changes: dict[str, Any] = {key: {"old": None, "new": value} for key, value in meta_added.items()}
        metadata_changes.update({key: {"old": value, "new": None} for key, value in meta_removed.items()})
        metadata_changes.update(meta_changed)
        later = new_context.history[len(old_context.history):]
        return {
            "data_changes": data_changes,
            "metadata_changes": metadata_changes,
            "new_transitions": [{"from": t.from_state, "to": t.to_state, "trigger": t.trigger} for t in later],
        }

    @staticmethod
    def diff_snapshots(old_snapshot: StateSnapshot, new_snapshot: StateSnapshot) -> dict[str, Any]:
        """The change of state, the seconds between the two, and `diff_contexts` of their contexts."""
        return {
            "state_change": old_snapshot.state_name != new_snapshot.state_name,
            "old_state": old_snapshot.state_name,
            "new_state": new_snapshot.state_name,
            "time_diff": new_snapshot.timestamp - old_snapshot.timestamp,
            "context_diff": DiffTracker.diff_contexts(old_snapshot.context, new_snapshot.context),
        }
