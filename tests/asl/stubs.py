"""Python stubs bound to the tasks of the ASL examples: each does what its Lambda function would."""

from __future__ import annotations

from typing import Any

from agentfsm import StateError

CALLS: dict[str, int] = {}


def price(input: dict[str, Any]) -> dict[str, Any]:
    return {"total": sum(item["price"] * item.get("quantity", 1) for item in input["items"])}


def audit(input: dict[str, Any]) -> dict[str, Any]:
    return {"audited": True, "dropped": "ResultPath null drops this"}


def charge(input: dict[str, Any]) -> dict[str, Any]:
    """Busy on the first call for a card (retried), declined over the card's limit."""
    card = input["card"]
    CALLS[card["number"]] = CALLS.get(card["number"], 0) + 1
    if CALLS[card["number"]] == 1:
        raise StateError("Busy", "try again")
    if card.get("broken"):
        raise ValueError("the card reader is broken")
    if input["amount"] > card["limit"]:
        raise StateError("CardDeclined", f"{input['amount']} is over the limit")
    return {"charged": input["amount"], "attempts": CALLS[card["number"]]}
