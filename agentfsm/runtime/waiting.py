"""Waiting for the world: external events delivered to a run, and the signal that suspends it.

A waiting state (a YAML `type: wait`) takes a `Delivery` from `context.mailbox`; when
none fits and its timer has not run out, it raises `WaitForEvent` and the loop ends the
run as `waiting` without recording the step. Whoever resumes the run (the store's
driver, or a Python caller) puts deliveries in the mailbox and the wait's deadline
back, then runs the machine again from the same point.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Delivery:
    """An external event sent to a run: its name, its JSON data, and its id in the store (None in memory)."""

    name: str
    data: Any = None
    id: int | None = None


@dataclass(slots=True)
class Mailbox:
    """What a run has received and not yet taken, and the deadline of the wait it is resuming."""

    deliveries: list[Delivery] = field(default_factory=list)
    deadline: float | None = None
    """When the wait being resumed times out (seconds since the epoch); None: it starts a fresh timer."""
    taken: Delivery | None = None
    """The delivery the current step took; the loop clears it after every step."""

    def deliver(self, name: str, data: Any = None, id: int | None = None) -> None:
        self.deliveries.append(Delivery(name, data, id))

    def take(self, names: Collection[str]) -> Delivery | None:
        """The oldest delivery named in `names` (remembered as `taken`).

        The mailbox is emptied: what else was delivered was sent to this visit of the wait,
        which is over, and no later visit must act on it.
        """
        for delivery in self.deliveries:
            if delivery.name in names:
                self.deliveries.clear()
                self.taken = delivery
                return delivery
        return None


    def timer_ran_out(self, name: str) -> None:
        """A wait's timer produced `name` (`timeout`): the step took it as it takes a delivery (the trace says so)."""
        self.taken = Delivery(name)


class WaitForEvent(BaseException):  # noqa: N818 - a signal, like CancelledError, not an error to retry or catch
    """Raised by a waiting state with nothing to take: the run suspends at that state.

    It derives from BaseException so that retry and catch rules, which handle errors, never see it.
    """

    def __init__(self, events: tuple[str, ...], deadline: float | None) -> None:
        super().__init__(f"waiting for {', '.join(events)}")
        self.events = events
        self.deadline = deadline
