"""Retry and catch: which rule applies to an error, and how long to wait before the next attempt."""

from __future__ import annotations

import random

from agentfsm.runtime.errors import StateError, error_matches
from agentfsm.runtime.model import CatchRule, RetryRule

MAX_RETRY_DELAY = 24 * 3600.0
"""No single wait between attempts is longer than a day, whatever the backoff says."""


def find_retry_rule(rules: tuple[RetryRule, ...], error: StateError) -> int | None:
    """Index of the first retry rule whose `errors` match (as in Step Functions, later rules are not tried)."""
    for index, rule in enumerate(rules):
        if error_matches(rule.errors, error.type):
            return index
    return None


def find_catch_rule(rules: tuple[CatchRule, ...], error: StateError) -> CatchRule | None:
    for rule in rules:
        if error_matches(rule.errors, error.type):
            return rule
    return None


def retry_delay(rule: RetryRule, retry_number: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `retry_number` (1-based)."""
    try:
        delay = rule.interval * rule.backoff_rate ** (retry_number - 1)
    except OverflowError:
        delay = float("inf")
    if rule.max_delay is not None:
        delay = min(delay, rule.max_delay)
    delay = min(delay, MAX_RETRY_DELAY)
    if rule.jitter == "full":
        delay = (rng or random).uniform(0.0, delay)
    return delay
