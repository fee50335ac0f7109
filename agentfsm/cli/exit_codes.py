"""Exit codes of every `agentfsm` command (documented in docs/cli.md and in `agentfsm --help`)."""

SUCCESS = 0
RUN_FAILED = 1
"""The run ended in a `fail` state or with an unhandled error."""
BAD_INPUT = 2
"""Bad input or usage: an invalid machine file, a bad -i value, a missing file, unknown options."""
PAUSED = 3
"""The run is paused: it waits for an event or a timer (`agentfsm send` or `resume` continues it), or it stopped
before a state at a breakpoint (`resume` continues it)."""
INTERNAL_ERROR = 70
"""A bug in agentfsm itself; rerun with --debug for the traceback."""
INTERRUPTED = 130
"""Ctrl-C (SIGINT) stopped the command; the shell's convention (128 + 2). A run it was advancing is left
`paused` at its last recorded step: `agentfsm resume` continues it."""
