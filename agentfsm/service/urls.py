"""How front ends show a store URL: never with its password (the store layer's one masking rule)."""

from __future__ import annotations

from agentfsm.store.urls import mask_url

__all__ = ["mask_url"]
