"""The one weight loader: official Lightning checkpoints, plain state_dicts, and every failure mode."""

import pytest
import torch
from torch import nn

from support.golden_fill import filled_state_dict
from support.pickles import UNPICKLED_CALLS, Payload
from hybriddepth_ros.core.models.weights import WeightsError, load_weights
from hybriddepth_ros.core.models.hybriddepth import HybridDepthNet


def small_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def filled_small_state(prefix=""):
    return {prefix + k: v for k, v in filled_state_dict(small_net(), "model.").items()}


def test_official_lightning_checkpoint_loads_into_full_network(tmp_path):
    source = HybridDepthNet()
    weights = filled_state_dict(source, "model.")
    path = tmp_path / "NYUBest5-DFV-Trained.ckpt"
    torch.save(
        {
            "state_dict": {"model." + k: v for k, v in weights.items()},
            "epoch": 7,
            "global_step": 1234,
            "pytorch-lightning_version": "2.1.0",
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4}]}],
        },
        path,
    )
    target = HybridDepthNet()
    assert load_weights(target, path) is target
    loaded = target.state_dict()
    assert loaded.keys() == weights.keys()
    assert all(torch.equal(loaded[k], weights[k]) for k in list(weights)[::50])
    assert torch.equal(loaded["ScaleMapLearner.scratch.output_conv.output_conv.4.bias"],
                       weights["ScaleMapLearner.scratch.output_conv.output_conv.4.bias"])


@pytest.mark.parametrize("prefix", ["", "model."])
def test_plain_state_dict_with_or_without_prefix(tmp_path, prefix):
    path = tmp_path / "weights.pt"
    torch.save(filled_small_state(prefix), path)
    net = load_weights(small_net(), path)
    assert torch.equal(net[0].weight, filled_small_state()["0.weight"])


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"absent\.ckpt: no such file"):
        load_weights(small_net(), tmp_path / "absent.ckpt")


def test_truncated_file(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": filled_small_state("model.")}, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match=r"truncated\.ckpt: not a readable torch file"):
        load_weights(small_net(), truncated)


def test_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("this is a text file, not weights\n")
    with pytest.raises(WeightsError, match=r"notes\.ckpt: not a torch weight file: it starts with b'this is '"):
        load_weights(small_net(), path)


def test_checkpoint_without_state_dict(tmp_path):
    path = tmp_path / "meta.ckpt"
    torch.save({"epoch": 3, "hparams": {"lr": 0.1}}, path)
    with pytest.raises(WeightsError, match=r"meta\.ckpt: no state_dict in the file \(found \[epoch, hparams\]\)"):
        load_weights(small_net(), path)


def test_wrong_keys_are_listed(tmp_path):
    state = filled_small_state("model.")
    state["model.2.weight"] = torch.ones(4)
    del state["model.1.running_var"]
    path = tmp_path / "wrong_keys.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(WeightsError) as info:
        load_weights(small_net(), path)
    message = str(info.value)
    assert "wrong_keys.ckpt" in message
    assert "1 missing keys [1.running_var]" in message
    assert "1 unexpected keys [2.weight]" in message


def test_wrong_shapes_are_listed(tmp_path):
    state = filled_small_state()
    state["0.weight"] = torch.zeros(4, 3, 5, 5)
    path = tmp_path / "wrong_shapes.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"1 shape mismatches \[0\.weight: file \(4, 3, 5, 5\) vs network \(4, 3, 3, 3\)\]"):
        load_weights(small_net(), path)


def test_arbitrary_pickled_object_is_refused_without_running_it(tmp_path):
    path = tmp_path / "malicious.ckpt"
    torch.save({"state_dict": filled_small_state("model."), "callback": Payload()}, path)
    with pytest.raises(WeightsError, match=r"malicious\.ckpt: refused"):
        load_weights(small_net(), path)
    assert UNPICKLED_CALLS == []


def test_non_tensor_entries_are_rejected(tmp_path):
    state = dict(filled_small_state("model."))
    state["model.note"] = "not a tensor"
    path = tmp_path / "mixed.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(WeightsError, match=r"not tensors: \[model\.note\]"):
        load_weights(small_net(), path)
