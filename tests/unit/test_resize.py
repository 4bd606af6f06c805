"""The matmul backward of bilinear resizing equals PyTorch's ``upsample_bilinear2d`` backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from isnet.models.layers.resize import interpolation_matrix, resize_bilinear


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((2, 5, 4, 4), (32, 32)),
        ((1, 3, 7, 9), (60, 71)),
        ((2, 4, 33, 47), (260, 371)),
        ((1, 2, 16, 20), (9, 13)),
    ],
)
def test_forward_is_interpolate_and_backward_matches(shape: tuple, size: tuple) -> None:
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64)
    ours_in, ref_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = resize_bilinear(ours_in, size)
    ref = F.interpolate(ref_in, size=size, mode="bilinear", align_corners=False)
    assert torch.equal(ours, ref)  # the forward is F.interpolate itself
    grad = torch.randn_like(ref)
    ours.backward(grad)
    ref.backward(grad)
    # the 1-D weights are computed in the precision PyTorch's CPU kernel uses: only the summation order differs
    assert (ours_in.grad - ref_in.grad).abs().max() <= 1e-12 * ref_in.grad.abs().max()


def test_fp32_gradient_and_matrix_rows() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 150, 8, 8, requires_grad=True)
    y = torch.randn(2, 150, 8, 8, requires_grad=True)
    grad = torch.randn(2, 150, 64, 64)
    resize_bilinear(x, (64, 64)).backward(grad)
    F.interpolate(y, size=(64, 64), mode="bilinear", align_corners=False).backward(grad)
    assert (x.grad - y.grad).abs().max() <= 1e-5 * y.grad.abs().max()
    matrix = interpolation_matrix(8, 64)
    torch.testing.assert_close(matrix.sum(1), torch.ones(64))  # every output is a convex combination
    assert (matrix > 0).sum(1).max() <= 2  # at most two taps
    # without autograd it is plain F.interpolate
    with torch.no_grad():
        assert torch.equal(resize_bilinear(x, (64, 64)), F.interpolate(x, (64, 64), mode="bilinear"))
