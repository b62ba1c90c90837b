"""The package's layers, read from its source: imports point down only, and one function reads weight files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "hybriddepth_ros"
ROS_MODULES = ("rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "diagnostic_msgs", "builtin_interfaces",
               "cv_bridge", "message_filters", "sensor_msgs_py", "launch", "launch_ros", "hybriddepth_ros.msg")
# Which core folders each core folder may import (besides itself).
CORE_MAY_IMPORT = {
    "stack": set(),
    "models": set(),
    "sim": {"stack"},
    "capture": {"stack", "sim"},
    "depth": {"stack", "models"},
    "data": {"stack", "sim", "capture"},
    "eval": {"stack", "models", "depth", "data"},
    "train": {"stack", "models", "sim", "depth", "data"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path) -> set[str]:
    """Absolute names of every module `module` imports (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("hybriddepth_ros.core")))
def test_core_imports_no_ros_node_or_tool_and_only_lower_core_folders(module):
    imports = _imports(module, MODULES[module])
    upward = [name for name in imports if name.startswith(("hybriddepth_ros.nodes", "hybriddepth_ros.tools",
                                                            "hybriddepth_ros.pipeline_plan"))]
    ros = [name for name in imports if name.split(".")[0] in ROS_MODULES or name.startswith(ROS_MODULES)]
    assert not upward and not ros, (upward, ros)
    parts = module.split(".")
    if len(parts) < 3:
        return
    folder = parts[2]
    allowed = CORE_MAY_IMPORT.get(folder, set()) | {folder}
    other_folders = {name.split(".")[2] for name in imports if name.startswith("hybriddepth_ros.core.")
                     and len(name.split(".")) > 3 and name.split(".")[2] in CORE_MAY_IMPORT}
    assert other_folders <= allowed, f"{module} imports core folders {other_folders - allowed}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("hybriddepth_ros.nodes")))
def test_nodes_import_no_tool(module):
    assert not [name for name in _imports(module, MODULES[module]) if name.startswith("hybriddepth_ros.tools")]


def test_torch_load_is_called_in_exactly_one_function():
    callers = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
                if isinstance(call.func, ast.Attribute) and call.func.attr == "load" and \
                        isinstance(call.func.value, ast.Name) and call.func.value.id == "torch":
                    callers.append(f"{module}.{function.name}")
    assert callers == ["hybriddepth_ros.core.models.weights.read_state_dict"]
