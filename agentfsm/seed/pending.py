"""Names of the seed's vocabulary that are not built yet: they import, and refuse to be used.

`VersionedStateMachine` lands with
the async store. Until then the mission's test file can import them, and using one says
plainly why it cannot work yet instead of failing somewhere deeper.
"""

from __future__ import annotations

from typing import Any, NoReturn


class _LandsWithTheAsyncStore:
    """A placeholder whose construction raises NotImplementedError naming the missing piece."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._refuse()

    @classmethod
    def _refuse(cls) -> NoReturn:
        raise NotImplementedError(f"agentfsm.seed.{cls.__name__} lands with the async store; it is not built yet")


class VersionedStateMachine(_LandsWithTheAsyncStore):
    """A machine with snapshots, rollback, checkpoints and branches (lands with the async store)."""
