"""Exit codes of every `agentfsm` command (documented in docs/cli.md)."""

SUCCESS = 0
RUN_FAILED = 1
"""The run ended in a `fail` state or with an unhandled error."""
BAD_INPUT = 2
"""Bad input or usage: an invalid machine file, a bad -i value, a missing file, unknown options."""
PAUSED = 3
"""The run is paused (waiting for an event or at a breakpoint); reserved until wait states land."""
INTERNAL_ERROR = 70
"""A bug in agentfsm itself; rerun with --debug for the traceback."""
