"""tests/services.py: a missing service skips on a developer's machine and fails under CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import REQUIRE_VARIABLE, find_binary, require_binary

ROOT = Path(__file__).resolve().parent.parent
MISSING = "agentfsm-no-such-program"


def test_a_present_program_is_found() -> None:
    assert require_binary("sh", package="dash") == find_binary("sh")


def test_a_missing_program_skips_saying_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install some-package"):
        require_binary(MISSING, package="some-package")


def test_a_missing_program_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception, match="may not skip"):
        require_binary(MISSING, package="some-package")


def test_any_skip_fails_the_session_under_ci(tmp_path: Path) -> None:
    """The conftest hook: a session with a skipped test exits non-zero when CI requires every service."""
    (tmp_path / "test_skips.py").write_text("import pytest\n\ndef test_x():\n    pytest.skip('no service')\n")
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    relaxed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    strict = subprocess.run(command, capture_output=True, text=True, env={**env, REQUIRE_VARIABLE: "1"}, cwd=tmp_path, timeout=120)
    assert relaxed.returncode == 0, relaxed.stdout + relaxed.stderr
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "skipped under AGENTFSM_REQUIRE_SERVICES=1" in strict.stdout
