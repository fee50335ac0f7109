"""The state kinds, one module each: its spec model, its checks, its runtime `State` and how it compiles.

Each module registers its kind with `agentfsm.spec.kinds.register` when imported; the
language loads the built-in ones by name (`agentfsm.spec.kinds.BUILTIN_KINDS`).
"""
