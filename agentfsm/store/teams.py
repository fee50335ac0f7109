"""A team's message bus and shared memory in a store: each operation one transaction, each safe to repeat.

A step taken again after a crash must not send twice or write twice: a message keeps the
step that sent it (`writer`), a write to the memory is logged with the step that made it,
and a taken message with the step that took it; repeating the step finds what it did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from agentfsm.store.base import MemoryRow, MessageRow, Transaction, WriteRow
from agentfsm.store.core import Store


async def send(store: Store, run_id: str, team: str, sender: str, recipients: Iterable[str], topic: str | None,
               content: Any, writer: str, now: float) -> list[int]:
    """Post a message to each recipient (once per sending step); returns the messages' ids."""
    recipients = list(recipients)

    async def post(tx: Transaction) -> list[int]:
        rows = tx.teams()
        done = await rows.messages(team, writer=writer)
        if done:
            return [message.id for message in done]
        return [await rows.insert_message(run_id, MessageRow(0, team, sender, recipient, topic, content, writer, now))
                for recipient in recipients]

    result: list[int] = await store.transact(post)
    return result


async def take(store: Store, team: str, recipient: str, fits: Callable[[MessageRow], bool],
               taker: str) -> MessageRow | None:
    """The oldest message to `recipient` that `fits`, marked taken by the step `taker` (the message that step
    took before, when it is taken again); None when there is none."""

    async def take_one(tx: Transaction) -> MessageRow | None:
        rows = tx.teams()
        before = await rows.messages(team, taker=taker)
        if before:
            return before[0]
        for message in await rows.messages(team, recipient=recipient, untaken=True):
            if fits(message) and await rows.take_message(team, message.id, taker):
                message.taken_by = taker
                return message
        return None

    found: MessageRow | None = await store.transact(take_one)
    return found


async def write_memory(store: Store, run_id: str, team: str, key: str, *, writer: str, agent: str, op: str,
                       decide: Callable[[MemoryRow | None], MemoryRow], now: float) -> MemoryRow:
    """Write one key as `decide(current)` says (it raises `Refused` to refuse); a step writing again gets what
    it wrote the first time."""

    async def write(tx: Transaction) -> MemoryRow:
        rows = tx.teams()
        logged = await rows.writes(team, writer=writer, key=key)
        if logged:
            return MemoryRow(key, logged[0].value, logged[0].version, updated_at=logged[0].at)
        found = await rows.memory(team, key)
        row = decide(found[0] if found else None)
        row.updated_at = now
        await rows.put_memory(run_id, team, row)
        await rows.insert_write(run_id, team, WriteRow(writer, key, op, row.value, row.version, now, agent))
        return row

    result: MemoryRow = await store.transact(write)
    return result


async def seed_memory(store: Store, run_id: str, team: str, values: dict[str, Any], now: float) -> None:
    """A team's first memory (each key at version 1), unless the team has memory already (a resumed team)."""

    async def seed(tx: Transaction) -> None:
        rows = tx.teams()
        if await rows.memory(team):
            return
        for key, value in values.items():
            await rows.put_memory(run_id, team, MemoryRow(key, value, 1, updated_at=now))

    await store.transact(seed)


async def memory(store: Store, team: str) -> list[MemoryRow]:
    async with store.backend.reading() as tx:
        return await tx.teams().memory(team)


async def messages(store: Store, team: str) -> list[MessageRow]:
    async with store.backend.reading() as tx:
        return await tx.teams().messages(team)


async def writes(store: Store, team: str) -> list[WriteRow]:
    async with store.backend.reading() as tx:
        return await tx.teams().writes(team)
