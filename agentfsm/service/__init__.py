"""The application layer: what a front end (the CLI, the worker, the web UI, a Python caller) does with runs."""
