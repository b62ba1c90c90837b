"""Weight-file fuzz through the fusion node's parameters, over DDS.

Each damaged file given as checkpoint_path, relative_weights_path or
dfv_weights_path must leave the node up, running the weight-free backend, with
an error naming the file and the damage, and publishing depth for the next
stack with `backend: focus_measure` in its diagnostics. (Before: a malicious
pickle or a 0-byte DFV file ended the node; int32, float16 or all-NaN DFV
weights loaded silently.)
"""

from __future__ import annotations

import os

import pytest
import torch
from diagnostic_msgs.msg import DiagnosticStatus

from hybriddepth_ros.core.models.depth_anything import DepthAnything
from hybriddepth_ros.core.models.dfv import DFVNet
from support.fusion_rig import FusionRig, restamp
from support.pickles import UNPICKLED_CALLS, Payload


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A usable relative-branch file, and damaged files by name (made on first use)."""
    folder = tmp_path_factory.mktemp("weights")
    relative = folder / "depth_anything_vits14.pth"
    torch.save(DepthAnything("vits").state_dict(), relative)
    dfv_state = DFVNet().state_dict()
    first_conv = next(k for k, v in dfv_state.items() if v.ndim == 4)

    def floating(convert):
        return {k: convert(v) if v.is_floating_point() else v for k, v in dfv_state.items()}

    makers = {
        "missing.pth": lambda path: None,
        "a_directory.pth": lambda path: path.mkdir(),
        "loop.pth": lambda path: os.symlink(path, path),
        "empty.pth": lambda path: path.write_bytes(b""),
        "text.pth": lambda path: path.write_text("<html>404 Not Found</html>\n"),
        "truncated.pth": lambda path: path.write_bytes((folder / _made("float16.pth")).read_bytes()[:100_000]),
        "malicious.pth": lambda path: torch.save({"state_dict": dfv_state, "hook": Payload()}, path),
        "int32.pth": lambda path: torch.save(floating(lambda v: v.to(torch.int32)), path),
        "float16.pth": lambda path: torch.save(floating(torch.Tensor.half), path),
        "all_nan.pth": lambda path: torch.save(floating(lambda v: torch.full_like(v, float("nan"))), path),
        "wrong_shapes.pth": lambda path: torch.save({**dfv_state, first_conv: dfv_state[first_conv][:, :1]}, path),
    }
    made = set()

    def _made(name: str) -> str:
        if name not in made:
            makers[name](folder / name)
            made.add(name)
        return name

    return {"relative": str(relative), "path": lambda name: str(folder / _made(name))}


CASES = [
    # (parameter, file, words in the error)
    ("dfv_weights_path", "empty.pth", "empty file (0 bytes)"),
    ("dfv_weights_path", "malicious.pth", "refused: the file holds pickled objects"),
    ("dfv_weights_path", "int32.pth", "dtype mismatches"),
    ("dfv_weights_path", "float16.pth", "dtype mismatches"),
    ("dfv_weights_path", "all_nan.pth", "hold NaN or infinite values"),
    ("dfv_weights_path", "wrong_shapes.pth", "shape mismatches"),
    ("relative_weights_path", "truncated.pth", "not a readable torch file"),
    ("relative_weights_path", "a_directory.pth", "is a directory"),
    ("relative_weights_path", "loop.pth", "symbolic link loop"),
    ("relative_weights_path", "missing.pth", "no such file"),
    ("relative_weights_path", "text.pth", "not a torch weight file: it starts with b'<html>40'"),
    ("checkpoint_path", "malicious.pth", "refused: the file holds pickled objects"),
]


@pytest.mark.parametrize("parameter, name, words", CASES, ids=[f"{p}={n}" for p, n, _ in CASES])
def test_a_damaged_weight_file_leaves_the_node_up_on_the_weight_free_backend(
    ros_context, simulated, files, capfd, parameter, name, words
):
    bad = files["path"](name)
    parameters = {"backend": "hybriddepth", "confidence_threshold": 0.0, parameter: bad}
    if parameter == "dfv_weights_path":  # the DFV file is read after a usable relative branch
        parameters["relative_weights_path"] = files["relative"]
    if parameter == "relative_weights_path":  # a relative branch alone runs with the weight-free DFF
        parameters["metric_branch"] = "focus_measure"
    rig = FusionRig(ros_context, **parameters)
    assert rig.node._backend_name == "focus_measure"
    logged = capfd.readouterr().err
    assert f"cannot use the weights: {bad}: " in logged and words in logged, logged
    assert "weight-free 'focus_measure' backend instead" in logged
    stack_msg, _ = simulated
    status = rig.send(restamp(stack_msg, 9000.0))
    assert status.level == DiagnosticStatus.OK, status.message
    assert {kv.key: kv.value for kv in status.values}["backend"] == "focus_measure"
    assert UNPICKLED_CALLS == []


@pytest.mark.parametrize("parameter, words", [
    ("relative_weights_path", "is the relative branch only: the DFF branch needs dfv_weights_path or checkpoint_path"),
    ("dfv_weights_path", "is the DFF branch only: the relative branch needs relative_weights_path or checkpoint_path"),
])
def test_one_branch_file_alone_says_what_is_missing(ros_context, files, capfd, parameter, words):
    rig = FusionRig(ros_context, backend="hybriddepth", **{parameter: files["relative"]})
    assert rig.node._backend_name == "focus_measure"
    logged = capfd.readouterr().err
    assert f"{parameter} {files['relative']} {words}" in logged and "no weights given" not in logged
