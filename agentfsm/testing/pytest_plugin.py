"""A pytest plugin: `*.test.yaml` files are collected beside Python tests, one test item per case.

Registered as the `pytest11` entry point `agentfsm`, so `pytest` finds machine tests wherever it looks
(`pytest machines/`, or `testpaths`); `pytest -p no:agentfsm` turns it off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfsm.spec.problems import MachineFileError
from agentfsm.testing.loader import LoadedTests, load_tests
from agentfsm.testing.models import TEST_SUFFIX, TestCase
from agentfsm.testing.report import failure_block
from agentfsm.testing.runner import run_case


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.name.endswith(TEST_SUFFIX):
        return MachineTestFile.from_parent(parent, path=file_path)
    return None


class MachineTestFile(pytest.File):
    """A `*.test.yaml` file: its cases, or one collection error listing its problems."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            loaded = load_tests(self.path, display_name=self.nodeid or str(self.path))
        except MachineFileError as exc:
            raise self.CollectError("\n".join(str(p) for p in exc.problems)) from None
        for index, case in enumerate(loaded.spec.cases):
            yield MachineTestCase.from_parent(self, name=case.name, loaded=loaded, index=index, case=case)


class MachineCaseFailed(Exception):
    """A case's expectations were not met (the message is the failure report)."""


class MachineTestCase(pytest.Item):
    """One case of a test file, run as `agentfsm test` runs it."""

    def __init__(self, *, loaded: LoadedTests, index: int, case: TestCase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loaded = loaded
        self.index = index
        self.case = case

    def runtest(self) -> None:
        result = asyncio.run(run_case(self.loaded, self.index, self.case))
        if not result.passed:
            raise MachineCaseFailed(failure_block(result))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, MachineCaseFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.loaded.case_line(self.index) - 1, f"{self.path.name}::{self.case.name}"
