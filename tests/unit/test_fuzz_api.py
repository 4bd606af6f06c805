"""Fuzzed calls of the public model API ``ISNet.forward`` / ``ISNet.predict_logits``.

Each generated input is either handled correctly (asserted: same logits whatever the memory layout, output
shapes for any size from 8x8 up) or rejected with an error that says what is wrong (asserted on the message).
A tiny model (ResNet-18-D backbone, 16 head channels, 8 attention channels) keeps it fast on a CPU.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isnet import ISNet, optimize_for_inference

K = 5
FUZZ = settings(
    deadline=None,
    max_examples=25,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
SIDE = st.integers(8, 72)
LAYOUTS = ["channels_last", "transposed_view", "strided_slice", "expanded_batch", "offset_storage"]
MODES = ["eval_fast", "eval_autograd", "train"]


@pytest.fixture(scope="module")
def model() -> ISNet:
    torch.manual_seed(0)
    net = ISNet(backbone="resnet18d", num_classes=K, feats_channels=16, transform_channels=8, dropout=0.0)
    # Non-trivial BatchNorm statistics, so eval mode (and its folded fast path) is exercised for real.
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(2, 3, 32, 32))
    return net.eval()


def _layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as ``x`` in another memory layout (never a contiguous NCHW tensor)."""
    if layout == "channels_last":
        out = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed_view":
        out = x.transpose(2, 3).contiguous().transpose(2, 3)
    elif layout == "strided_slice":
        wide = torch.zeros(x.shape[0], x.shape[1], x.shape[2], 2 * x.shape[3], dtype=x.dtype)
        wide[..., ::2] = x
        out = wide[..., ::2]
    elif layout == "expanded_batch":
        out = x[:1].expand(x.shape[0], -1, -1, -1)
    else:  # a view starting in the middle of a larger storage
        flat = torch.cat([torch.zeros(7), x.flatten()])
        out = flat[7:].view(x.shape)
        assert out.storage_offset() == 7
    assert torch.equal(out, x if layout != "expanded_batch" else x[:1].expand_as(x))
    return out


def _run(model: ISNet, x: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "train":
        model.train()
        try:
            return model(x)["stage2"].detach()
        finally:
            model.eval()
    if mode == "eval_fast":
        with torch.no_grad():
            return model(x)
    return model(x).detach()  # eval with autograd on: the plain (unfolded) modules run


@FUZZ
@given(
    layout=st.sampled_from(LAYOUTS),
    mode=st.sampled_from(MODES),
    n=st.integers(1, 2),
    h=SIDE,
    w=SIDE,
    seed=st.integers(0, 2**16),
)
def test_memory_layout_does_not_change_logits(
    model: ISNet, layout: str, mode: str, n: int, h: int, w: int, seed: int
) -> None:
    if mode == "train" and n == 1:
        n = 2  # batch statistics of a single image are valid, but keep train batches realistic
    x = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))
    odd = _layout(x, layout)
    reference = _run(model, x.contiguous() if layout != "expanded_batch" else odd.contiguous(), mode)
    got = _run(model, odd, mode)
    assert got.shape == (n, K, h, w)
    # Convolution kernels may pick another summation order for another layout; only rounding may differ.
    torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-4)


@FUZZ
@given(n=st.integers(1, 3), h=SIDE, w=SIDE, mode=st.sampled_from(["eval", "train", "predict_logits"]))
def test_any_size_from_8_gives_full_resolution_logits(
    model: ISNet, n: int, h: int, w: int, mode: str
) -> None:
    x = torch.randn(n, 3, h, w)
    if mode == "train":
        model.train()
        try:
            if n * math.ceil(h / 8) * math.ceil(w / 8) == 1:
                # One image whose 1/8 features are 1x1: BatchNorm has a single value per channel to normalise.
                with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
                    model(x)
                return
            out = model(x)
        finally:
            model.eval()
        assert set(out) == {"stage1", "stage2", "aux"}
        for value in out.values():
            assert value.shape == (n, K, h, w) and torch.isfinite(value).all()
        return
    with torch.no_grad():
        if mode == "eval":
            out = model(x)
            assert out.shape == (n, K, h, w)
        else:
            out = model.predict_logits(x)
            # Output stride 8: three stride-2 steps, each rounding up (padding 1, kernel 3).
            assert out.shape == (n, K, math.ceil(h / 8), math.ceil(w / 8))
    assert torch.isfinite(out).all()


@FUZZ
@given(h=st.integers(1, 40), w=st.integers(1, 40))
def test_smaller_than_8_pixels_is_refused(model: ISNet, h: int, w: int) -> None:
    x = torch.randn(1, 3, h, w)
    if h >= 8 and w >= 8:
        with torch.no_grad():
            assert model(x).shape == (1, K, h, w)
        return
    with pytest.raises(ValueError, match=re.escape(f"({h}, {w})")):
        model(x)


@FUZZ
@given(shape=st.lists(st.integers(1, 12), min_size=1, max_size=6))
def test_wrong_rank_or_channel_count_is_refused(model: ISNet, shape: list[int]) -> None:
    if len(shape) == 4 and shape[1] == 3:
        shape[1] = 4
    x = torch.randn(*shape)
    with pytest.raises(ValueError, match=re.escape(str(tuple(shape)))):
        model(x)


@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool]
)
def test_integer_images_are_refused_with_a_hint(model: ISNet, dtype: torch.dtype) -> None:
    x = torch.zeros(1, 3, 16, 16).to(dtype)
    with pytest.raises(TypeError, match=re.escape(str(dtype))):
        model(x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_eval_fast_path_casts_to_the_weights(model: ISNet, dtype: torch.dtype) -> None:
    """Eval without autograd casts the images to the weights' dtype: same logits as casting by hand."""
    x = torch.randn(2, 3, 19, 26).to(dtype)
    with torch.no_grad():
        got = model(x)
        expected = model(x.float())
    assert got.dtype == torch.float32 and torch.equal(got, expected)


@pytest.mark.parametrize("mode", ["eval_autograd", "train"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_with_autograd_compute_in_the_weights_dtype(
    model: ISNet, dtype: torch.dtype, mode: str
) -> None:
    """With autograd too, another float precision is cast to the weights' dtype (outside autocast)."""
    x = torch.randn(2, 3, 16, 16).to(dtype)
    torch.manual_seed(0)
    got = _run(model, x, mode)
    torch.manual_seed(0)  # same dropout mask in train mode
    expected = _run(model, x.float(), mode)
    assert got.dtype == torch.float32 and torch.equal(got, expected)
    assert not model.training


@pytest.mark.parametrize("value", [np.zeros((1, 3, 16, 16), np.float32), [[[[0.0] * 16] * 16] * 3], None])
def test_non_tensors_are_refused(model: ISNet, value: object) -> None:
    with pytest.raises(TypeError, match=type(value).__name__):
        model(value)


def test_fast_path_is_bitwise_layout_independent(model: ISNet) -> None:
    """The inference copy converts every input to channels_last: identical bits."""
    x = torch.randn(2, 3, 37, 45)
    fast = optimize_for_inference(model)
    with torch.no_grad():
        a = fast(x)
        b = fast(x.contiguous(memory_format=torch.channels_last))
        c = fast(x.transpose(2, 3).contiguous().transpose(2, 3))
    assert torch.equal(a, b) and torch.equal(a, c)


def test_empty_batch_gives_empty_logits(model: ISNet) -> None:
    with torch.no_grad():
        assert model(torch.randn(0, 3, 16, 24)).shape == (0, K, 16, 24)
