"""Tools and a Python state for ticket_triage.yaml: a small simulated help desk.

The CRM is flaky on purpose, the way real ones are: every other lookup of a known
customer fails with a transient `tool.unavailable` error, which the machine retries;
an unknown customer is a `tool.error`, which the machine catches and escalates.
"""

from __future__ import annotations

import itertools

from agentfsm import State, StateContext, StateError

CUSTOMERS = {
    "ada@example.com": {"name": "Ada Lovelace", "plan": "enterprise", "open_invoices": 1},
    "grace@example.com": {"name": "Grace Hopper", "plan": "starter", "open_invoices": 0},
}
_lookups = itertools.count(1)
_ticket_numbers = itertools.count(1001)

SLA_HOURS = {"urgent": 1, "high": 4, "normal": 24, "low": 72}


def lookup_customer(email: str) -> dict[str, object]:
    """Find a customer in the CRM."""
    record = CUSTOMERS.get(email.strip().lower())
    if record is None:
        raise KeyError(f"no customer with email {email}")
    if next(_lookups) % 2 == 1:
        raise StateError("tool.unavailable", "CRM did not answer in time (simulated outage)")
    return {"email": email, **record}


async def open_ticket(title: str, priority: str, team: str) -> dict[str, object]:
    """Open a ticket in the issue tracker."""
    return {"id": f"HD-{next(_ticket_numbers)}", "title": title, "priority": priority, "team": team}


class AssignSla(State):
    """Sets the response deadline from the triage priority; an enterprise customer is always at least `high`."""

    async def execute(self, context: StateContext) -> None:
        priority = context.get("triage", {}).get("priority", "normal")
        if (context.get("account") or {}).get("plan") == "enterprise" and SLA_HOURS.get(priority, 24) > 4:
            priority = "high"
        context.set("priority", priority)
        context.set("sla_hours", SLA_HOURS.get(priority, 24))
