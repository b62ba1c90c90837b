"""The phone bridge states the websockets release it needs (>= 13) and checks it before importing it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hybriddepth_ros.core.capture.phone.websockets_version import MIN_WEBSOCKETS_VERSION, websockets_problem
from support.fake_packages import fake_distribution


@pytest.mark.parametrize("version", ["13.0", "13.1", "14.2", "15.0.1", "17.4"])
def test_websockets_13_and_later_are_accepted(version):
    assert websockets_problem(version) is None


@pytest.mark.parametrize("version", ["9.1", "10.4", "11.0.3", "12.0"])
def test_older_websockets_like_ubuntus_are_refused_naming_both_versions_and_the_fix(version):
    problem = websockets_problem(version)
    assert f"found {version}" in problem and "websockets >= 13.0" in problem
    assert "pip install 'websockets>=13'" in problem and "\n" not in problem


def test_missing_websockets_is_refused_with_the_fix():
    assert "not installed" in websockets_problem(None) and "pip install" in websockets_problem(None)


def test_importing_the_bridge_with_ubuntu_2404s_websockets_says_what_is_needed(tmp_path):
    folder = fake_distribution(tmp_path, "websockets", "10.4")
    code = (
        f"import sys; sys.path.insert(0, {str(folder)!r})\n"
        "from hybriddepth_ros.core.capture.base import CaptureError\n"
        "try:\n"
        "    import hybriddepth_ros.core.capture.phone.server\n"
        "except CaptureError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "found 10.4" in result.stdout and "websockets>=13" in result.stdout
    assert MIN_WEBSOCKETS_VERSION == (13, 0)
