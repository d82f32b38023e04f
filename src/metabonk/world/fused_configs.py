"""Launch configurations of the fused U-Net kernels, and which of them fit a layer: the candidates that
`FusedInner.tuning()` times per layer shape (the fastest is kept)."""

from __future__ import annotations

import functools

from metabonk.world.fused_pack import pow2

CONV_CONFIGS: tuple[dict[str, int], ...] = (
    {"BM": 128, "num_warps": 4, "NUM_STAGES": 3, "SWAP": 0},
    {"BM": 128, "num_warps": 4, "NUM_STAGES": 3, "SWAP": 1},
    {"BM": 256, "num_warps": 4, "NUM_STAGES": 3, "SWAP": 1},
    {"BM": 128, "num_warps": 4, "NUM_STAGES": 4, "SWAP": 1},
    {"BM": 64, "num_warps": 4, "NUM_STAGES": 3, "SWAP": 0},
)
"""`conv_kernel` launches: BM output pixels per tile; SWAP puts the pixels on the MMA's N (64 output channels on
its M: 64x128 / 64x256 MMAs instead of 64x64). BM 64 is tried only where no larger tile fits (8x8 maps); a K
block of 128 channels is tried too where the input has 128. The lists keep the launches that were fastest, or
within 3 %, for some layer on an H200 (benchmarks/results/fused-profile-fp8-h200.json has every candidate's
time); 8-warp tiles, 512-pixel tiles and a pointer-based persistent kernel never were, and are not tried."""

NARROW_CONFIGS: tuple[dict[str, int], ...] = ({"BM": 256, "num_warps": 4, "NUM_STAGES": 3, "SWAP": 0},)
"""An extra `conv_kernel` launch for convs with fewer than 64 output channels (the output conv), which cannot put
pixels on the MMA's N: a larger pixel tile instead (within 2 % of the 128-pixel tile on the H200; 8-warp and
512-pixel tiles were 5-9 % slower and are not tried)."""

THIN_INPUT_CONFIGS: tuple[dict[str, int], ...] = ({"BM": 256, "num_warps": 4, "NUM_STAGES": 6, "SWAP": 1},)
"""An extra `conv_kernel` launch for a 16-channel input (the input conv): each tap's K block is only 16 channels,
so a deeper pipeline (0.41 ms vs 0.43 at 3 stages on the H200, batch 1024; 8-warp tiles were slower)."""

CONV_TMA_CONFIGS: tuple[dict[str, int], ...] = (
    {"BM": 256, "num_warps": 4, "NUM_STAGES": 3, "SWAP": 1, "TMA": 1},
    {"BM": 256, "num_warps": 4, "NUM_STAGES": 4, "SWAP": 1, "TMA": 1},
    {"BM": 128, "num_warps": 4, "NUM_STAGES": 4, "SWAP": 1, "TMA": 1},
    {"BM": 128, "num_warps": 4, "NUM_STAGES": 3, "SWAP": 0, "TMA": 1},
    {"BM": 64, "num_warps": 4, "NUM_STAGES": 3, "SWAP": 0, "TMA": 1},
    {"BM": 256, "num_warps": 4, "NUM_STAGES": 3, "SWAP": 1, "TMA": 1, "EPI": 1},
    {"BM": 256, "num_warps": 4, "NUM_STAGES": 3, "SWAP": 1, "TMA": 1, "EPI": 1, "PERSIST": 2},
    {"BM": 256, "num_warps": 4, "NUM_STAGES": 4, "SWAP": 1, "TMA": 1, "PERSIST": 2},
)
"""`conv_tma_kernel` launches (stride-1 and sub-pixel convs; a tile is BM / W whole rows of one sample). EPI: the
residual and the output through the TMA unit too (where the output channels fill the tile; not sub-pixel).
PERSIST: that many programs per SM, each walking tiles with the next tile's loads overlapping this epilogue."""

NORM_CONFIGS: tuple[dict[str, int], ...] = (
    {"BP": 64, "num_warps": 4}, {"BP": 64, "num_warps": 2}, {"BP": 32, "num_warps": 2}, {"BP": 128, "num_warps": 4},
    {"BP": 128, "num_warps": 2}, {"BP": 32, "num_warps": 1}, {"BP": 16, "num_warps": 1},
)
"""Pixels per program and warps of the norm pass (small programs won on an H200: 32-64 pixels, 2 warps; the
1-warp and 128-pixel 2-warp programs were added for the last H200 run, whose per-candidate times were not kept)."""

TMA_MAX_BOX = 256
"""Largest extent of a TMA box along one dimension (elements)."""


def _fits(cfgs: tuple[dict[str, int], ...], hw: int, n_pad: int) -> list[dict[str, int]]:
    fits = [c for c in cfgs if c["BM"] <= hw and hw % c["BM"] == 0 and (n_pad >= 64 or not c["SWAP"])]
    if any(c["BM"] > 64 for c in fits):
        fits = [c for c in fits if c["BM"] > 64]
    return fits


def conv_candidates(hw: int, cin: int, n_pad: int, tma_width: int = 0, itemsize: int = 2,
                    epi: bool = True) -> list[dict[str, int]]:
    """Configurations that fit a conv whose program grid covers `hw` pixels per sample. `tma_width` > 0: the conv
    can also run as `conv_tma_kernel` (stride 1, a grid `tma_width` pixels wide); `itemsize`: input bytes per
    element (a TMA box row is at most 128 bytes: K blocks of 128 channels only for FP8); `epi`: the TMA
    epilogue applies (not for sub-pixel convs, whose output pixels are not consecutive)."""
    fits = _fits(CONV_CONFIGS, hw, n_pad)
    if n_pad < 64:
        fits += _fits(NARROW_CONFIGS, hw, n_pad)
    elif cin <= 16:
        fits += _fits(THIN_INPUT_CONFIGS, hw, n_pad)
    if not fits and pow2(hw) and hw >= 16:  # small maps (tests): one tile per sample
        fits = [{"BM": hw, "num_warps": 4, "NUM_STAGES": 2, "SWAP": 0}]
    tma: list[dict[str, int]] = []
    if 8 <= tma_width <= TMA_MAX_BOX and tma_width % 8 == 0:
        tma = [c for c in _fits(CONV_TMA_CONFIGS, hw, n_pad)
               if c["BM"] % tma_width == 0 and c["BM"] // tma_width <= TMA_MAX_BOX and (epi or not c.get("EPI"))]
    if cin % 128 == 0:
        fits += [{**c, "BK": 128} for c in fits[:1] + [c for c in fits if c["SWAP"]][:1]]
        if itemsize == 1:
            tma += [{**c, "BK": 128} for c in tma[:2]]
    return fits + tma


@functools.cache
def cached_conv_candidates(hw: int, cin: int, n_pad: int, tma_width: int, itemsize: int,
                           epi: bool) -> tuple[dict[str, int], ...]:
    """`conv_candidates`, built once per layer shape (the sampler asks at every launch)."""
    return tuple(conv_candidates(hw, cin, n_pad, tma_width, itemsize, epi))


@functools.cache
def norm_candidates(hw: int) -> tuple[dict[str, int], ...]:
    """Norm-pass configurations whose pixel tile divides a `hw`-pixel map (one tile per sample if none does)."""
    return tuple(c for c in NORM_CONFIGS if c["BP"] <= hw and hw % c["BP"] == 0) or ({"BP": hw, "num_warps": 4},)
