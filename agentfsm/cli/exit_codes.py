"""Exit codes of every `agentfsm` command (documented in docs/cli.md)."""

SUCCESS = 0
RUN_FAILED = 1
"""The run ended in a `fail` state or with an unhandled error."""
BAD_INPUT = 2
"""Bad input or usage: an invalid machine file, a bad -i value, a missing file, unknown options."""
PAUSED = 3
"""The run is paused: it waits for an event or a timer (`agentfsm send` or `resume` continues it)."""
INTERNAL_ERROR = 70
"""A bug in agentfsm itself; rerun with --debug for the traceback."""
