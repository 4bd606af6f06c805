"""WinogradConv2d against F.conv2d: dilations, odd sizes, batches, bias, memory formats, bands, refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from isnet.accel.winograd import WinogradConv2d, winograd_weight

# fp32: max |winograd - conv_fp64| / max |conv_fp64|. With these few channels the direct fp32 conv is ~1e-7 off;
# 1e-5 (~100 ulp) leaves room for the extra additions of the transforms and fails on any indexing mistake.
FP32_RTOL = 1e-5
# float64: the algorithm itself is exact, so the only difference left is float64 rounding.
FP64_RTOL = 1e-12


def _conv(cin: int, cout: int, dilation: int, bias: bool, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=bias)
    if bias:
        nn.init.normal_(conv.bias)  # large enough that a lost or doubled bias shows
    return conv.eval()


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


@pytest.mark.parametrize("dilation", [1, 2, 4])
@pytest.mark.parametrize("size", [(7, 9), (13, 17), (64, 64)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_matches_conv2d_fp32(dilation: int, size: tuple[int, int], bias: bool, channels_last: bool) -> None:
    conv = _conv(4, 5, dilation, bias)
    x = torch.randn(2, 4, *size, generator=torch.Generator().manual_seed(1))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    wino = WinogradConv2d(conv)
    with torch.no_grad():
        y = wino(x)
        ref = F.conv2d(x.double(), conv.weight.double(), None if conv.bias is None else conv.bias.double(),
                       padding=dilation, dilation=dilation)  # fmt: skip
        direct = conv(x)
    assert y.shape == direct.shape == (2, 5, *size)
    assert y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert _rel_err(y, ref) <= FP32_RTOL
    assert _rel_err(y, direct) <= FP32_RTOL


@pytest.mark.parametrize("dilation", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 8), (11, 6), (16, 16)])
def test_exact_in_float64(dilation: int, size: tuple[int, int]) -> None:
    """In float64 the only difference left is rounding, so any tile, padding or crop mistake shows."""
    conv = _conv(3, 2, dilation, bias=True).double()
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y, ref = WinogradConv2d(conv)(x), conv(x)
    assert y.shape == ref.shape
    assert _rel_err(y, ref) <= FP64_RTOL


@pytest.mark.parametrize("band_tiles", [1, 5, 40, 10_000])
@pytest.mark.parametrize(("batch", "size", "dilation"), [(3, (9, 7), 1), (2, (10, 13), 2), (1, (12, 17), 3)])
def test_bands_split_rows_and_group_images(
    band_tiles: int, batch: int, size: tuple[int, int], dilation: int
) -> None:
    """One tile row per band, several rows, whole images, several images per band: all give the conv."""
    conv = _conv(3, 4, dilation, bias=True).double()
    x = torch.randn(batch, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y, ref = WinogradConv2d(conv, band_tiles=band_tiles)(x), conv(x)
    assert _rel_err(y, ref) <= FP64_RTOL


def test_winograd_weight_is_g_g_gt() -> None:
    """Position (i, j) of U holds (G g G^T)[i, j] for every (Cin, Cout) pair, computed here element by element."""
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    u = winograd_weight(weight)
    g = torch.tensor(
        [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    assert u.shape == (16, 2, 3)
    for o in range(3):
        for c in range(2):
            expected = g @ weight[o, c] @ g.T
            torch.testing.assert_close(u[:, c, o].reshape(4, 4), expected, rtol=0, atol=1e-15)


def test_state_dict_and_weight_updates() -> None:
    conv = _conv(3, 4, 2, bias=True)
    wino = WinogradConv2d(conv)
    assert set(wino.state_dict()) == set(conv.state_dict()) == {"weight", "bias"}
    assert not any(p.requires_grad for p in wino.parameters())
    x = torch.randn(1, 3, 10, 10)

    other = _conv(3, 4, 2, bias=True, seed=7)
    wino.load_state_dict(other.state_dict())  # the transformed weights must follow
    with torch.no_grad():
        assert _rel_err(wino(x), other(x)) <= FP32_RTOL
        wino.weight.mul_(2.0)
        other.weight.mul_(2.0)
        assert _rel_err(wino(x), other(x)) <= FP32_RTOL


def test_input_checks() -> None:
    wino = WinogradConv2d(_conv(3, 4, 1, bias=False))
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\), got shape \(1, 2, 8, 8\)"):
        wino(torch.randn(1, 2, 8, 8))
    with pytest.raises(
        ValueError, match="input dtype torch.float64 differs from the weight dtype torch.float32"
    ):
        wino(torch.randn(1, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="inference-only"):
        wino(torch.randn(1, 3, 8, 8, requires_grad=True))


@pytest.mark.parametrize(
    ("conv", "match"),
    [
        (nn.Conv2d(4, 4, 3, stride=2, padding=1), r"stride \(1, 1\) only, got stride=\(2, 2\)"),
        (nn.Conv2d(4, 4, 1), r"kernel_size \(3, 3\) only, got kernel_size=\(1, 1\)"),
        (nn.Conv2d(4, 4, 3, padding=1, groups=2), r"groups 1 only, got groups=2"),
        (nn.Conv2d(4, 4, 3, padding=0), r"padding \(d, d\) = dilation \(1, 1\) only, got padding=\(0, 0\)"),
        (nn.Conv2d(4, 4, 3, padding=1, dilation=2), r"got padding=\(1, 1\)"),
        (nn.Conv2d(4, 4, 3, padding=(1, 2), dilation=(1, 2)), r"dilation .* got dilation=\(1, 2\)"),
        (
            nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
            r"padding_mode 'zeros' only, got padding_mode=",
        ),
        (nn.Linear(4, 4), "conv must be an nn.Conv2d, got Linear"),
    ],
)
def test_refuses_unsupported_convs(conv: nn.Module, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WinogradConv2d(conv)


def test_refuses_bad_band_tiles() -> None:
    with pytest.raises(ValueError, match="band_tiles must be a positive number of tiles or None, got 0"):
        WinogradConv2d(nn.Conv2d(4, 4, 3, padding=1), band_tiles=0)


def test_release_weight_keeps_the_result_and_drops_the_direct_weight() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 6, 3, padding=2, dilation=2)
    x = torch.randn(2, 8, 11, 13)
    module = WinogradConv2d(conv)
    with torch.no_grad():
        before = module(x)
        module.release_weight()
        after = module(x)
    assert module.weight is None and "weight" not in module.state_dict()
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="input dtype torch.float64 differs"):
        module(x.double())
