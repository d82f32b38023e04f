"""Weights of the fused U-Net kernels: nn.Conv2d / group-norm parameters repacked into the layouts
`metabonk.world.fused_kernels` reads (K-contiguous [cout, taps*cin] bf16 or FP8 e4m3 with per-channel scales; the
sub-pixel form of upsampling convolutions; the 1x1 skip of a res-block)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metabonk.common.errors import MetabonkError

FP8_MAX = 448.0
"""Largest finite float8 e4m3 value: weights are scaled to it (the kernels clamp activations to it too)."""


def pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (n >= 1)."""
    return 1 << (n - 1).bit_length()


def block_k(cin: int, fp8: bool) -> int:
    """Largest power of two <= 64 that divides cin (>= 32 for FP8 MMAs, >= 16 for bf16)."""
    bk = 64
    while bk > 16 and cin % bk:
        bk //= 2
    if cin % bk or (fp8 and bk < 32):
        raise MetabonkError(f"fused conv: {cin} input channels are not a multiple of {32 if fp8 else 16}")
    return bk


@dataclass
class ConvSpec:
    """A convolution packed for `conv_kernel`: weights [n_pad, k*k*cin] (bf16 or e4m3), fp32 bias and scales."""

    w: torch.Tensor
    bias: torch.Tensor
    wscale: torch.Tensor | None
    cin: int
    cout: int
    n_pad: int
    ksize: int
    """Taps per side the kernel walks: 3 or 1; 2 for an upsampling conv in sub-pixel form."""
    stride: int
    upsample: bool
    """Nearest-2x upsampling first: `w` holds four 2x2 kernels, one per output phase, [4, n_pad, 4*cin]."""
    ws: torch.Tensor | None = None
    """1x1 skip-convolution weights [cout, cs] (bf16) of a res-block's second conv: the norm pass before the
    block's first conv computes the skip from the raw input; this conv adds it (its bias is in `bias`)."""


_SUBPIXEL_ROWS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
"""For output phase p (row parity), which of a 3x3 kernel's rows land on low-res rows i-1+p and i+p after
nearest-2x upsampling: phase 0 reads row i-1 with kernel row 0 and row i with rows 1+2; phase 1 reads row i with
rows 0+1 and row i+1 with row 2 (the same for columns)."""


def subpixel_weights(w: torch.Tensor) -> torch.Tensor:
    """[cout, cin, 3, 3] weights of a conv after nearest-2x upsampling -> [4, cout, cin, 2, 2], one 2x2 kernel
    of the low-resolution input per output phase (py * 2 + px): the same outputs with 4 taps instead of 9."""
    A = _SUBPIXEL_ROWS.to(w)
    k = torch.einsum("pak,oikl,qbl->pqoiab", A, w, A)
    return k.reshape(4, *k.shape[2:])


def pack_conv(
    conv: nn.Conv2d,
    fp8: bool = False,
    cin_pad: int | None = None,
    upsample: bool = False,
    skip: nn.Conv2d | None = None,
) -> ConvSpec:
    """Repack an nn.Conv2d (3x3 pad 1 or 1x1, stride 1 or 2) for the kernel; FP8 weights get per-channel scales.
    `upsample`: the conv reads a nearest-2x upsampled input (packed in sub-pixel form)."""
    w = conv.weight.detach().float()
    cout, cin, kh, kw = w.shape
    if kh != kw or conv.padding[0] != kh // 2 or conv.groups != 1 or conv.dilation[0] != 1:
        raise MetabonkError(f"fused conv supports square 'same'-padded convolutions, got {conv}")
    if upsample and (kh != 3 or conv.stride[0] != 1):
        raise MetabonkError("fused upsampling conv must be 3x3, stride 1")
    if cin_pad is not None and cin_pad > cin:
        w = F.pad(w, (0, 0, 0, 0, 0, cin_pad - cin))
        cin = cin_pad
    n_pad = max(16, next_pow2(cout))
    ksize = kh
    if upsample:
        w = subpixel_weights(w)  # [4, cout, cin, 2, 2]
        ksize = 2
    else:
        w = w[None]
    w = w.permute(0, 1, 3, 4, 2).reshape(w.shape[0], cout, -1)  # k = (dy*K + dx)*cin + c
    w = F.pad(w, (0, 0, 0, n_pad - cout))
    bias = F.pad(conv.bias.detach().float() if conv.bias is not None else w.new_zeros(cout), (0, n_pad - cout))
    ws = None
    if skip is not None:
        ws = skip.weight.detach()[:, :, 0, 0].to(torch.bfloat16).contiguous()
        if skip.bias is not None:
            bias = bias + F.pad(skip.bias.detach().float(), (0, n_pad - cout))
    wscale = None
    if fp8:
        if upsample:
            raise MetabonkError("fused FP8 convs take normalised inputs; upsampling convs stay bf16")
        wscale = (w[0].abs().amax(dim=1) / FP8_MAX).clamp_min(1e-12)
        wq = (w / wscale[None, :, None]).to(torch.float8_e4m3fn)
    else:
        wq = w.to(torch.bfloat16)
    wq = wq[0] if not upsample else wq
    return ConvSpec(wq.contiguous(), bias.contiguous(), wscale, cin, cout, n_pad, ksize, conv.stride[0], upsample, ws)


@dataclass
class NormSpec:
    """A group norm: groups, eps, and where its [scale(C), shift(C)] rows live in the modulation tensor."""

    channels: int
    groups: int
    eps: float
    offset: int
    """Column of the scale block in the per-forward modulation matrix (AdaGN); -1: `const` holds them."""
    const: torch.Tensor | None = None
    """[1, 2C] fp32 (weight - 1, bias) of an affine nn.GroupNorm, shared by every sample."""


def pack_input(noisy_BCHW: torch.Tensor, context_BKCHW: torch.Tensor, cin_pad: int) -> torch.Tensor:
    """The fused U-Net's input, [B, H, W, cin_pad] bf16: the noisy frame's channels, then the context frames',
    then zeros (`fused_kernels.pack_input_kernel`, one pass)."""
    from metabonk.world.fused_kernels import pack_input_kernel

    B, c0, H, W = noisy_BCHW.shape
    ctx = context_BKCHW.flatten(1, 2).contiguous()
    c1, hw = ctx.shape[1], H * W
    if ctx.shape[0] != B or ctx.shape[2:] != noisy_BCHW.shape[2:]:
        raise MetabonkError(f"fused input: context {tuple(context_BKCHW.shape)} does not match the frame "
                            f"{tuple(noisy_BCHW.shape)}")
    if c0 + c1 > cin_pad or not pow2(hw):
        raise MetabonkError(f"fused input: {c0 + c1} channels of {H}x{W} do not fit the packed {cin_pad} channels")
    out = torch.empty(B, H, W, cin_pad, device=noisy_BCHW.device, dtype=torch.bfloat16)
    bp = min(hw, 128)
    pack_input_kernel[(B * hw // bp,)](noisy_BCHW.contiguous(), ctx, out, hw, C0=c0, C1=c1, CPAD=cin_pad,
                                       CBLOCK=next_pow2(cin_pad), BP=bp, num_warps=4)
    return out
