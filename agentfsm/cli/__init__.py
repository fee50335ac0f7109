"""The `agentfsm` command: a thin layer over the Python API."""
