"""Triton kernels of the fused U-Net sampler: an implicit-GEMM convolution with a fused epilogue, and a
group-norm + modulation + SiLU pass that folds the norm's statistics into it.

Hand-written because no library does this for us: cuDNN's convolutions cannot take the group norm's
statistics in their epilogue, PyTorch has no FP8 convolution, and torch.compile leaves the convolutions to
cuDNN and the norms as separate memory-bound reductions (docs/world.md: ~50 % of the sampler's time).

Data layout: activations are NHWC (`[B, H, W, C]`, contiguous), weights `[N_PAD, KH*KW*CIN]` with the reduction
index k = tap*CIN + c (K contiguous, the operand layout FP8 tensor-core MMAs need).

- `conv_kernel`: out = conv(x) [+ 1x1 conv of up to two raw skip tensors] + bias [+ residual], written bf16 (or
  fp32), and, when STATS, the per-(sample, channel) sum and sum of squares of the output accumulated with atomics
  into `stats[B, 2, COUT]`, so the next group norm needs no pass of its own over the tensor. 3x3 or 1x1 taps,
  stride 1 or 2, or nearest-2x upsampling folded into the input indexing. The input may be bf16 or FP8 (e4m3);
  with FP8 weights each output channel is multiplied by its dequantisation scale.
- `norm_act_kernel`: y = SiLU(x * a + b) where a, b come from the group statistics of the (possibly
  concatenated) input and the per-sample AdaGN scale/shift, written bf16 or FP8 into a channel slice of the
  conv's input tensor. Each program reduces the group statistics for its own sample (a few hundred flops) so no
  separate "finalize" launch is needed.

A program's rows all belong to one sample (BM divides H*W), which keeps the statistics one atomic per channel.
"""

from __future__ import annotations

import triton
import triton.language as tl

FP8_MAX = 448.0
"""Largest finite float8 e4m3 value: activations are clamped to it before the cast."""


@triton.jit
def _k_step(acc, x_ptr, w_ptr, kk, oh, ow, offs_n, Hin, Win, Ho, Wo,
            CIN: tl.constexpr, KSIZE: tl.constexpr, STRIDE: tl.constexpr, UPSAMPLE: tl.constexpr,
            BK: tl.constexpr, UPCAST: tl.constexpr):
    """One reduction step: acc += the [BM, BK] input tile of tap kk // (CIN // BK), channels
    (kk % (CIN // BK)) * BK.., times its [BK, BN] weight tile. x_ptr points at this program's sample."""
    CHUNKS: tl.constexpr = CIN // BK
    PAD: tl.constexpr = KSIZE // 2
    KTOT: tl.constexpr = KSIZE * KSIZE * CIN
    tap = kk // CHUNKS
    c0 = (kk % CHUNKS) * BK
    dy = tap // KSIZE - PAD
    dx = tap % KSIZE - PAD
    if UPSAMPLE:  # conv over the nearest-2x upsampled input: output grid Ho x Wo = 2 Hin x 2 Win
        uh = oh + dy
        uw = ow + dx
        valid = (uh >= 0) & (uh < Ho) & (uw >= 0) & (uw < Wo)
        ih = tl.maximum(uh, 0) // 2
        iw = tl.maximum(uw, 0) // 2
    else:
        ih = oh * STRIDE + dy
        iw = ow * STRIDE + dx
        valid = (ih >= 0) & (ih < Hin) & (iw >= 0) & (iw < Win)
    offs_k = tl.arange(0, BK)
    x = tl.load(x_ptr + ((ih * Win + iw) * CIN)[:, None] + (c0 + offs_k)[None, :], mask=valid[:, None], other=0.0)
    w = tl.load(w_ptr + (offs_n * KTOT)[None, :] + (tap * CIN + c0 + offs_k)[:, None])
    if UPCAST:  # Triton's CPU interpreter (tests) mis-multiplies bf16 operands; same values in fp32
        x = x.to(tl.float32)
        w = w.to(tl.float32)
    return tl.dot(x, w, acc)


@triton.jit
def _skip_dot(acc, s_ptr, ws_ptr, r, offs_n, C: tl.constexpr, C_OFF: tl.constexpr, CSTOT: tl.constexpr,
              BKS: tl.constexpr, UPCAST: tl.constexpr):
    """acc += s[r, :C] @ ws[:, C_OFF:C_OFF+C].T (a 1x1 convolution of a raw bf16 tensor; s_ptr at the sample)."""
    offs_k = tl.arange(0, BKS)
    for c0 in tl.static_range(0, C, BKS):
        s = tl.load(s_ptr + (r * C)[:, None] + (c0 + offs_k)[None, :])
        w = tl.load(ws_ptr + (offs_n * CSTOT)[None, :] + (C_OFF + c0 + offs_k)[:, None])
        if UPCAST:
            s = s.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(s, w, acc)
    return acc


@triton.jit
def conv_kernel(
    x_ptr, w_ptr, wscale_ptr, bias_ptr,
    s1_ptr, s2_ptr, ws_ptr, res_ptr,
    out_ptr, stats_ptr,
    Hin, Win, Ho, Wo,
    CIN: tl.constexpr, COUT: tl.constexpr, KSIZE: tl.constexpr, STRIDE: tl.constexpr, UPSAMPLE: tl.constexpr,
    WSCALE: tl.constexpr, CS1: tl.constexpr, CS2: tl.constexpr, RESIDUAL: tl.constexpr, STATS: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BKS: tl.constexpr,
    NUM_STAGES: tl.constexpr, UPCAST: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    HWo = Ho * Wo
    start = pid_m * BM
    bidx = start // HWo
    r = start - bidx * HWo + tl.arange(0, BM)  # output pixels of this program, within sample bidx
    oh = r // Wo
    ow = r % Wo
    offs_n = pid_n * BN + tl.arange(0, BN)
    b64 = bidx.to(tl.int64)  # per-sample base pointers in 64 bits, offsets inside a sample in 32
    xb = x_ptr + b64 * Hin * Win * CIN
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    KK: tl.constexpr = KSIZE * KSIZE * (CIN // BK)
    for kk in tl.range(0, KK, num_stages=NUM_STAGES):  # software-pipelined: cp.async, NUM_STAGES deep
        acc = _k_step(acc, xb, w_ptr, kk, oh, ow, offs_n, Hin, Win, Ho, Wo, CIN, KSIZE, STRIDE, UPSAMPLE, BK, UPCAST)
    if WSCALE:
        acc = acc * tl.load(wscale_ptr + offs_n)[None, :]
    if CS1 > 0:  # 1x1 skip convolution of the raw block input (one or two concatenated tensors), bf16
        accs = tl.zeros((BM, BN), dtype=tl.float32)
        accs = _skip_dot(accs, s1_ptr + b64 * HWo * CS1, ws_ptr, r, offs_n, CS1, 0, CS1 + CS2, BKS, UPCAST)
        if CS2 > 0:
            accs = _skip_dot(accs, s2_ptr + b64 * HWo * CS2, ws_ptr, r, offs_n, CS2, CS1, CS1 + CS2, BKS, UPCAST)
        acc += accs
    acc += tl.load(bias_ptr + offs_n)[None, :]
    n_ok = offs_n < COUT
    o_off = (r * COUT)[:, None] + offs_n[None, :]
    obase = b64 * HWo * COUT
    if RESIDUAL:
        acc += tl.load(res_ptr + obase + o_off, mask=n_ok[None, :], other=0.0).to(tl.float32)
    tl.store(out_ptr + obase + o_off, acc.to(out_ptr.dtype.element_ty), mask=n_ok[None, :])
    if STATS:
        sbase = stats_ptr + bidx * 2 * COUT + offs_n
        tl.atomic_add(sbase, tl.sum(acc, axis=0), mask=n_ok)
        tl.atomic_add(sbase + COUT, tl.sum(acc * acc, axis=0), mask=n_ok)


@triton.jit
def norm_act_kernel(
    x_ptr, stats_ptr, scale_ptr, shift_ptr, out_ptr,
    HW, inv_hw, eps,
    C: tl.constexpr, CPG: tl.constexpr, MOD_BSTRIDE, OUT_CSTRIDE: tl.constexpr, OUT_COFF: tl.constexpr,
    FP8_OUT: tl.constexpr, BP: tl.constexpr,
):
    """out[p, OUT_COFF + c] = SiLU(x[p, c] * a[c] + b[c]) for BP pixels of one sample, C channels.

    a = rstd_g * (1 + scale), b = shift - mean_g * a, with the group (CPG channels) mean and variance from the
    per-channel sums in stats [B, 2, C]; scale/shift rows are MOD_BSTRIDE apart (0: shared by all samples)."""
    pid = tl.program_id(0)
    start = pid * BP
    bidx = start // HW
    offs_c = tl.arange(0, C)
    s = tl.load(stats_ptr + bidx * 2 * C + offs_c) * inv_hw
    sq = tl.load(stats_ptr + bidx * 2 * C + C + offs_c) * inv_hw
    G: tl.constexpr = C // CPG
    mean_g = tl.sum(tl.reshape(s, (G, CPG)), axis=1) / CPG
    msq_g = tl.sum(tl.reshape(sq, (G, CPG)), axis=1) / CPG
    rstd_g = 1.0 / tl.sqrt(tl.maximum(msq_g - mean_g * mean_g, 0.0) + eps)
    mean_c = tl.reshape(tl.broadcast_to(mean_g[:, None], (G, CPG)), (C,))
    rstd_c = tl.reshape(tl.broadcast_to(rstd_g[:, None], (G, CPG)), (C,))
    scale = tl.load(scale_ptr + bidx * MOD_BSTRIDE + offs_c).to(tl.float32)
    shift = tl.load(shift_ptr + bidx * MOD_BSTRIDE + offs_c).to(tl.float32)
    a = rstd_c * (1.0 + scale)
    b = shift - mean_c * a
    p = start - bidx * HW + tl.arange(0, BP)  # pixels within sample bidx
    b64 = bidx.to(tl.int64)
    x = tl.load(x_ptr + b64 * HW * C + (p * C)[:, None] + offs_c[None, :]).to(tl.float32)
    v = x * a[None, :] + b[None, :]
    v = v * tl.sigmoid(v)
    if FP8_OUT:
        v = tl.clamp(v, -448.0, 448.0)
    ob = out_ptr + b64 * HW * OUT_CSTRIDE + OUT_COFF
    tl.store(ob + (p * OUT_CSTRIDE)[:, None] + offs_c[None, :], v.to(out_ptr.dtype.element_ty))
