"""Durable runs over a store: recording, resuming, waiting, rolling back, branching, comparing.

Machines arrive ready: compiling machine files is the application layer's (`agentfsm.service`).
"""
