"""The websockets release the phone bridge needs, checked before server.py imports it.

server.py serves with `websockets.asyncio`, which exists from websockets 13.0.
Ubuntu's python3-websockets, the one rosdep would install, is older (9.1 on
22.04, 10.4 on 24.04); without this check a phone backend there would end the
node with ModuleNotFoundError. With it, the node says what it needs in one line
(exit 2) and how to get it.
"""

from __future__ import annotations

import re
from importlib import metadata

from ..base import CaptureError

MIN_WEBSOCKETS_VERSION = (13, 0)
INSTALL_HINT = "python3 -m pip install 'websockets>=13'"


def websockets_problem(version: str | None) -> str | None:
    """Why websockets `version` (None: not installed) cannot run the phone bridge, or None."""
    needed = ".".join(str(part) for part in MIN_WEBSOCKETS_VERSION)
    if version is None:
        return f"the phone backend needs the Python package websockets >= {needed}, which is not installed: {INSTALL_HINT}"
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if numbers >= MIN_WEBSOCKETS_VERSION:
        return None
    return (f"the phone backend needs websockets >= {needed} (websockets.asyncio), found {version} "
            f"(Ubuntu's python3-websockets is older): {INSTALL_HINT}")


def installed_websockets_version() -> str | None:
    """The installed websockets release, or None."""
    try:
        return metadata.version("websockets")
    except metadata.PackageNotFoundError:
        pass
    try:
        from websockets.version import version
    except ImportError:
        return None
    return str(version)


def require_websockets() -> None:
    """CaptureError (one line: what is needed, what was found, how to install it) unless websockets is recent enough."""
    problem = websockets_problem(installed_websockets_version())
    if problem:
        raise CaptureError(problem)
