"""Observability: progress display and Mermaid diagrams (later: traces, breakpoints, metrics)."""
