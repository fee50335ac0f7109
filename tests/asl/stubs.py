"""Python stubs bound to the tasks of the ASL examples: each does what its Lambda function would."""

from __future__ import annotations

import asyncio
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


def address(input: dict[str, Any]) -> dict[str, Any]:
    return {"city": {"75": "Paris"}.get(str(input["zip"])[:2], "elsewhere")}


def ship_validate(input: dict[str, Any]) -> dict[str, Any]:
    if input["parcel"]["sku"] == "bad":
        raise StateError("InvalidParcel", f"parcel {input['position']} has no valid sku")
    return {"sku": input["parcel"]["sku"], "position": input["position"], "by": input["partner"]}


def score(input: dict[str, Any]) -> dict[str, Any]:
    return {"points": len(input["name"]) * 10}


def travel_step(input: dict[str, Any]) -> dict[str, Any]:
    """Each of the saga's functions: succeeds, except the payment when the input asks it to fail."""
    return {"status": "ok", "trip": input.get("trip_id")}


def travel_payment(input: dict[str, Any]) -> dict[str, Any]:
    if input.get("run_type") == "failPayment":
        raise StateError("PaymentDeclined", "the card was declined")
    return {"status": "paid", "trip": input.get("trip_id")}


def publish(input: dict[str, Any]) -> dict[str, Any]:
    return {"MessageId": "m-1", "Message": input["Message"]}


ROWS = "name,qty\na,1\nb,2\nc,3\nd,4\ne,5\n"


def read_csv(input: dict[str, Any]) -> list[dict[str, str]]:
    """What an S3 getObject ItemReader gives for a CSV file whose first row names the columns: rows of text."""
    assert input["Key"] == "rows.csv" and input["ReaderConfig"]["CSVHeaderLocation"] == "FIRST_ROW", input
    header, *lines = ROWS.splitlines()
    return [dict(zip(header.split(","), line.split(","), strict=True)) for line in lines]


def sum_batch(input: dict[str, Any]) -> dict[str, Any]:
    return {"total": sum(int(row["qty"]) for row in input["Items"]), "unit": input["BatchInput"]["unit"],
            "rows": [row["at"] for row in input["Items"]]}


async def slow(input: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(input["sleep"])
    return {"slept": input["sleep"]}
