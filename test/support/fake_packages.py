"""Stand-ins for installed Python distributions, to test how the package meets other versions of them."""

from __future__ import annotations

from pathlib import Path


def fake_distribution(folder: Path, name: str, version: str) -> Path:
    """An empty package `name` with the metadata of `version`, in `folder`: put first on sys.path, it shadows
    the installed one for importlib.metadata (e.g. Ubuntu 24.04's websockets 10.4)."""
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text("")
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return folder
