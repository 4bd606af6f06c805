"""``torch.compile`` of the training forward (ISNetModule) and of the inference copy gives the eager numbers."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from isnet import ISNet
from isnet.accel import optimize_for_inference
from isnet.accel.optimize import compile_options, with_freezing
from isnet.lit import ISNetModule
from tests.unit.test_fusion import _randomise

pytestmark = pytest.mark.slow  # each compile takes 10-60 s on a 2-core CPU


_ARCH = dict(backbone="resnet18d", num_classes=5, feats_channels=16, transform_channels=8, dropout=0.0)


def _tiny() -> ISNet:
    torch.manual_seed(0)
    model = ISNet(**_ARCH)
    _randomise(model)
    return model


def test_compiled_eval_copy_equals_plain_fp32() -> None:
    model = _tiny().eval()
    fast = optimize_for_inference(model, compile=True)
    x = torch.randn(2, 3, 48, 64)
    with torch.inference_mode():
        compiled = fast(x)
        assert fast._compiled is not None
        again = fast(x)  # compiled once
        plain = model(x)
    torch.testing.assert_close(again, compiled, rtol=0, atol=0)
    # freezing prepacks the folded weights; the numbers stay at fp32 rounding
    assert (compiled - plain).abs().max() <= 1e-4 * max(1.0, plain.abs().max().item())


def test_compiled_training_step_equals_eager() -> None:
    """Same outputs and gradients, compared in float64.

    In fp32 the comparison is ill-posed on a tiny model: the SLC groups pixels by the stage-1 argmax and ReLU
    masks depend on signs, so a pre-activation or logit margin within rounding (seen: a BN output of 1e-6 on a
    4x4 map) flips a decision and moves weight gradients by percents in either implementation. In float64 the
    compiled graph must give the eager numbers to ~1e-12.
    """
    eager = _tiny().train().double()
    module = ISNetModule(model_config=dict(_ARCH), num_classes=5, compile=True)
    module.model = copy.deepcopy(eager)
    compiled = module.model
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    out_e, out_c = eager(x), module(x)
    assert module._compiled_train is not None
    assert set(out_e) == set(out_c) == {"stage2", "stage1", "aux"}
    for name in out_e:
        assert (out_c[name] - out_e[name]).abs().max() <= 1e-10 * max(1.0, out_e[name].abs().max().item())
    weight = torch.randn_like(out_e["stage2"])
    sum((o * weight).sum() for o in out_e.values()).backward()
    sum((o * weight).sum() for o in out_c.values()).backward()
    for (name, p_e), p_c in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        if p_e.grad is None:
            assert p_c.grad is None, name
            continue
        scale = max(1.0, p_e.grad.abs().max().item())
        assert (p_c.grad - p_e.grad).abs().max() <= 1e-9 * scale, name
    # the BatchNorm running statistics were updated by the compiled forward as by the eager one
    torch.testing.assert_close(
        compiled.head.bottleneck[1].running_mean, eager.head.bottleneck[1].running_mean
    )
    # the network itself stays a plain module: it pickles, and its checkpoint config has no compile switch
    clone = pickle.loads(pickle.dumps(compiled))
    assert "compile" not in clone.config


def test_compile_options_are_checked() -> None:
    assert compile_options(False) is None and compile_options(True) == {}
    assert compile_options({"mode": "max-autotune-no-cudagraphs"}) == {"mode": "max-autotune-no-cudagraphs"}
    with pytest.raises(ValueError, match="modes"):
        optimize_for_inference(ISNet("resnet18d", 3), compile={"modes": "default"})
    with pytest.raises(ValueError, match="yes"):
        ISNetModule(model_config={"backbone": "resnet18d"}, num_classes=3, compile="yes")


def test_eval_copy_gets_freezing_even_with_a_mode() -> None:
    frozen = with_freezing({"mode": "max-autotune-no-cudagraphs", "dynamic": False})
    assert "mode" not in frozen and frozen["dynamic"] is False
    assert frozen["options"]["freezing"] is True and frozen["options"]["max_autotune"] is True
    assert with_freezing({"options": {"freezing": False}})["options"]["freezing"] is False  # the user wins
    assert with_freezing({"backend": "eager"}) == {"backend": "eager"}
