"""Winograd F(2x2, 3x3) convolution for fp32 CPU inference.

Implements the minimal-filtering algorithm of Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks" (CVPR 2016), with torch ops only. Each 2x2 block of outputs is computed from a 4x4 input tile as

    Y = A^T [ (G g G^T) * (B^T d B) ] A,

where ``*`` is the element-wise product over the 16 tile positions: summed over input channels, 16 matrix
products (tiles x Cin) @ (Cin x Cout) in one ``torch.bmm``, 4 multiplications per output instead of 9. The
transforms only add and subtract, so the result is as accurate as the direct convolution. (F(4x4, 3x3) saves
more, but its constants make the fp32 error ~5x the direct convolution's, ~3x the logit difference.)

A dilated convolution (dilation d, padding d) takes the 4x4 input tile and 2x2 output block with spacing d
(each group of 2d rows holds d interleaved blocks); sizes that are not multiples of 2d are zero-padded and
cropped. The memory-bound transforms run in cache-sized bands of about ``band_tiles`` tiles with reused
buffers. On a 2-core AVX-512 CPU this takes 0.5-0.7x the time of oneDNN's direct convolution for 256-2048
channels; below ~128 channels the transforms dominate and it is slower.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["WinogradConv2d", "unsupported_setting", "winograd_weight"]

# Lavin & Gray's F(2x2, 3x3) filter transform G (4x3).
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))

# Lavin & Gray's F(2x2, 3x3) output transform A^T (2x4).
_AT = ((1.0, 1.0, 1.0, 0.0), (0.0, 1.0, -1.0, -1.0))


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """Transform 3x3 filters to the 16 Winograd positions, ``U = G g G^T``, laid out for ``torch.bmm``.

    Computed in float64 and rounded once (a single rounding), a few output channels at a time (no temporary of
    several times the weights' memory). Position ``4 * i + j`` is tile entry (i, j), in ``weight``'s dtype.

    Shape:
        weight (Cout, Cin, 3, 3) -> (16, Cin, Cout).
    """
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    out_channels, in_channels = weight.shape[:2]
    u = weight.new_empty((4, 4, in_channels, out_channels))
    step = max(1, (1 << 20) // (in_channels * 9))  # float64 temporaries of a few MB, not 4x the weights
    for start in range(0, out_channels, step):
        chunk = weight[start : start + step].detach().to(torch.float64)
        u[..., start : start + step] = torch.einsum("ik,ockl,jl->ijco", g, chunk, g)
    return u.reshape(16, in_channels, out_channels)


def _fill_slab(slab: torch.Tensor, x: torch.Tensor, row0: int, d: int) -> None:
    """Copy input rows ``row0 ...`` into ``slab`` at column offset d, zeros where the rows/columns fall outside.

    The slab is the zero-padded input of one band of tiles; its column borders are zeroed by the caller.

    Shape:
        slab (N, Hs, Wp, C) contiguous, x (N, H, W, C) any strides.
    """
    h, w = x.shape[1], x.shape[2]
    lo, hi = max(row0, 0), min(row0 + slab.shape[1], h)
    if lo > row0:
        slab[:, : lo - row0, d : d + w].zero_()
    if hi < row0 + slab.shape[1]:
        slab[:, hi - row0 :, d : d + w].zero_()
    slab[:, lo - row0 : hi - row0, d : d + w].copy_(x[:, lo:hi])


def _input_transform(slab: torch.Tensor, t: torch.Tensor, v: torch.Tensor, d: int) -> None:
    """``B^T d B`` for every tile of a zero-padded band of the input, written into ``v`` for the bmm.

    Tile (b, a) along one axis starts at slab row ``2 d b + a`` and takes rows ``+0, +d, +2d, +3d``;
    ``B^T`` maps rows (r0, r1, r2, r3) to (r0 - r2, r1 + r2, r2 - r1, r1 - r3). The rows are transformed first
    (on full-width rows, half the data of the tiles) into ``t``, then the columns straight into ``v``.

    Shape:
        slab (N, Hs, Wp, C) contiguous, t (4, N, tiles_h, d, Wp, C), v (4, 4, N, tiles_h, d, tiles_w, d, C).
    """
    n, tiles_h, tiles_w = v.shape[2], v.shape[3], v.shape[5]
    _, _, wp, c = slab.shape
    s_n, s_h, s_w, s_c = slab.stride()
    rows = slab.as_strided((4, n, tiles_h, d, wp, c), (d * s_h, s_n, 2 * d * s_h, s_h, s_w, s_c))
    torch.sub(rows[0], rows[2], out=t[0])
    torch.add(rows[1], rows[2], out=t[1])
    torch.sub(rows[2], rows[1], out=t[2])
    torch.sub(rows[1], rows[3], out=t[3])

    s = t.stride()
    cols = t.as_strided(
        (4, 4, n, tiles_h, d, tiles_w, d, c), (d * s[4], s[0], s[1], s[2], s[3], 2 * d * s[4], s[4], s[5])
    )
    v_cols = v.transpose(0, 1)  # (col pos, row pos, tile..., C)
    torch.sub(cols[0], cols[2], out=v_cols[0])
    torch.add(cols[1], cols[2], out=v_cols[1])
    torch.sub(cols[2], cols[1], out=v_cols[2])
    torch.sub(cols[1], cols[3], out=v_cols[3])


def _output_transform(
    m: torch.Tensor, a2: torch.Tensor, tmp: torch.Tensor, out: torch.Tensor, bias: torch.Tensor | None
) -> None:
    """``A^T m A`` (plus bias) for every tile of a band, written into the NHWC output.

    ``A^T`` maps (m0, m1, m2, m3) to (m0 + m1 + m2, m1 - m2 - m3). Both sides at once are one small matmul with
    ``a2 = kron(A^T, A^T)``, which reads ``m`` once; the bias is added while the four outputs of each tile are
    moved to their places in the image.

    Shape:
        m (16, tiles, Cout), a2 (4, 16), tmp (4, tiles, Cout), out (N, tiles_h, 2, d, tiles_w, 2, d, Cout).
    """
    n, tiles_h, _, d, tiles_w, _, _, k = out.shape
    torch.mm(a2, m.view(16, -1), out=tmp.view(4, -1))
    y = tmp.view(2, 2, n, tiles_h, d, tiles_w, d, k)
    out_ij = out.permute(2, 5, 0, 1, 3, 4, 6, 7)  # (row out, col out, N, tiles_h, d, tiles_w, d, K)
    if bias is None:
        out_ij.copy_(y)
    else:
        torch.add(y, bias, out=out_ij)


class WinogradConv2d(nn.Module):
    """A 3x3, stride-1 convolution with padding equal to its dilation, computed with Winograd F(2x2, 3x3).

    Gives the result of the source ``nn.Conv2d`` up to fp32 rounding with 2.25x fewer multiplications; it is
    meant for inference (the ``out=`` kernels it uses do not support autograd). ``weight`` and ``bias`` are
    copies of the conv's, with the same state-dict keys, and the transformed weights are recomputed whenever
    ``weight`` changes in place (``load_state_dict``, ``copy_``).

    Args:
        conv: the convolution to replace: kernel 3x3, stride 1, groups 1, padding == dilation (any d >= 1),
            zero padding, with or without bias.
        band_tiles: about how many 2x2 output blocks to compute at a time (whole tile rows, at least one row).
            ``None`` picks ``max(128, 32768 // Cin)``: the bmm then still runs near peak while the transformed
            band (16 x tiles x Cin floats) stays within a few MB; that was fastest for 32-2048 channels on a
            2-core AVX-512 CPU.

    Shape:
        input (N, Cin, H, W) in any memory format -> output (N, Cout, H, W) in ``channels_last``.
    """

    def __init__(self, conv: nn.Conv2d, band_tiles: int | None = None) -> None:
        super().__init__()
        if reason := unsupported_setting(conv):
            raise ValueError(reason)
        if band_tiles is None:
            band_tiles = max(128, 32768 // conv.in_channels)
        if band_tiles < 1:
            raise ValueError(f"band_tiles must be a positive number of tiles or None, got {band_tiles}")
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.dilation = conv.dilation[0]
        self.band_tiles = band_tiles
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.bias = bias
        self.register_buffer("weight_u", winograd_weight(self.weight), persistent=False)
        self._weight_version = self._version_of_weight()
        a_t = torch.tensor(_AT, dtype=self.weight.dtype, device=self.weight.device)
        self.register_buffer("a2", torch.kron(a_t, a_t), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size=(3, 3), padding={self.dilation}, "
            f"dilation={self.dilation}, bias={self.bias is not None}"
        )

    def release_weight(self) -> WinogradConv2d:
        """Keep only the transformed weights ``U`` and drop the 3x3 ``weight`` (a frozen inference copy never
        changes it): the module then holds 16/9 instead of 25/9 of the direct convolution's weight memory."""
        self.weight = None
        return self

    def _version_of_weight(self) -> int | None:
        if self.weight is None:
            return None
        return None if self.weight.is_inference() else self.weight._version

    def _transformed_weight(self) -> torch.Tensor:
        """``U`` of the current ``weight``, recomputed if the weight was changed in place since the last call."""
        if self.weight is None:
            return self.weight_u
        version = self._version_of_weight()
        if version != self._weight_version or self.weight_u.dtype != self.weight.dtype:
            self.weight_u = winograd_weight(self.weight)
            self._weight_version = version
        return self.weight_u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        if x.dtype != self.weight_u.dtype:
            raise ValueError(f"input dtype {x.dtype} differs from the weight dtype {self.weight_u.dtype}")
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError(
                "WinogradConv2d is inference-only: run it under torch.no_grad() or inference_mode()"
            )
        weight_u = self._transformed_weight()
        d, k = self.dilation, self.out_channels
        n, c, h, w = x.shape
        tiles_h, tiles_w = -(-h // (2 * d)), -(-w // (2 * d))  # tile rows b (each holds d interleaved tiles)
        wp = 2 * d * tiles_w + 2 * d  # padded width: d zero columns before, enough after for the last tile
        # A band is several whole images when they fit in band_tiles, else some tile rows of one image.
        row_tiles = d * tiles_w * d  # tiles per tile row b of one image
        rows_fit = max(1, self.band_tiles // row_tiles)
        images = max(1, min(n, rows_fit // tiles_h))
        band_rows = min(tiles_h, rows_fit)
        max_tiles = images * band_rows * row_tiles
        # buffers reused by every band
        slab_buf = x.new_empty((images, 2 * d * band_rows + 2 * d, wp, c))
        slab_buf[:, :, :d].zero_()
        slab_buf[:, :, d + w :].zero_()
        t_buf = x.new_empty(4 * images * band_rows * d * wp * c)
        v_buf = x.new_empty(16 * max_tiles * c)
        m_buf = x.new_empty(16 * max_tiles * k)
        y_buf = x.new_empty(4 * max_tiles * k)

        x_nhwc = x.permute(0, 2, 3, 1)
        out = x.new_empty((n, tiles_h, 2, d, tiles_w, 2, d, k))  # = (N, 2d tiles_h, 2d tiles_w, K)
        for i0 in range(0, n, images):
            i1 = min(n, i0 + images)
            for b0 in range(0, tiles_h, band_rows):
                b1 = min(tiles_h, b0 + band_rows)
                ni, nb = i1 - i0, b1 - b0
                tiles = ni * nb * row_tiles
                slab = slab_buf[:ni, : 2 * d * nb + 2 * d]
                _fill_slab(slab, x_nhwc[i0:i1], 2 * d * b0 - d, d)
                t = t_buf[: 4 * ni * nb * d * wp * c].view(4, ni, nb, d, wp, c)
                v = v_buf[: 16 * tiles * c].view(4, 4, ni, nb, d, tiles_w, d, c)
                _input_transform(slab, t, v, d)
                m = m_buf[: 16 * tiles * k].view(16, tiles, k)
                torch.bmm(v.view(16, tiles, c), weight_u, out=m)
                _output_transform(m, self.a2, y_buf[: 4 * tiles * k], out[i0:i1, b0:b1], self.bias)
        out = out.view(n, 2 * d * tiles_h, 2 * d * tiles_w, k)
        if out.shape[1] != h or out.shape[2] != w:
            out = out[:, :h, :w].contiguous()
        return out.permute(0, 3, 1, 2)


def unsupported_setting(conv: nn.Module) -> str | None:
    """Why Winograd F(2x2, 3x3) cannot replace ``conv`` (the first setting it does not cover), or None if it can."""
    if not isinstance(conv, nn.Conv2d):
        return f"conv must be an nn.Conv2d, got {type(conv).__name__}"
    checks = (
        ("kernel_size", conv.kernel_size, "(3, 3)", conv.kernel_size == (3, 3)),
        ("stride", conv.stride, "(1, 1)", conv.stride == (1, 1)),
        ("groups", conv.groups, "1", conv.groups == 1),
        ("dilation", conv.dilation, "(d, d) with d >= 1", conv.dilation[0] == conv.dilation[1]),
        ("padding", conv.padding, f"(d, d) = dilation {conv.dilation}", conv.padding == conv.dilation),
        ("padding_mode", conv.padding_mode, "'zeros'", conv.padding_mode == "zeros"),
    )
    for name, value, allowed, ok in checks:
        if not ok:
            return f"WinogradConv2d supports conv {name} {allowed} only, got {name}={value!r}"
    return None
