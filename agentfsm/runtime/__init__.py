"""The async runtime: the object model (`model.py`, `machine.py`) and the step loop (`loop.py`).

It knows nothing of YAML, templates or storage. The public names are exported, lazily,
from the top-level `agentfsm` package.
"""
