"""Fused-kernel inference path of the denoiser network (CUDA, Triton): a drop-in for `InnerModel` in the sampler.

`FusedInner(inner, precision)` computes the same function as `InnerModel` with the kernels of
`metabonk.world.fused_kernels`: every convolution is one implicit-GEMM kernel whose epilogue adds bias and residual
and accumulates the next group norm's per-channel statistics; every group norm + AdaGN modulation + SiLU is one pass
that writes the next convolution's input (bf16, or FP8 e4m3 with `precision="fp8"`, where the convolutions that
read normalised activations run on FP8 tensor cores with per-output-channel weight scales; convolutions of raw
inputs stay bf16) and, before a res-block with a 1x1 skip, computes that skip from the raw tiles it reads.
Upsampling convolutions run in sub-pixel form. Activations are NHWC bf16, statistics and accumulators fp32.

It keeps the original sub-modules under their own names, so `state_dict()` of a model whose denoiser uses it is
unchanged; the packed kernel weights are copies made at construction (call `repack()` after changing weights).
Inference only (no autograd). Inside `tuning()`, each layer shape's launch configurations
(`metabonk.world.fused_configs`: pointer-based or TMA-fed convolutions, tile sizes, pipeline depths) are timed on
real inputs and the fastest kept (do it before capturing a CUDA graph; `DreamEnv` does it on its first GPU step).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from metabonk.common.errors import MetabonkError
from metabonk.world.blocks import ResBlock
from metabonk.world.fused_configs import cached_conv_candidates, norm_candidates
from metabonk.world.fused_pack import ConvSpec, NormSpec, block_k, pack_conv, pack_input, pow2
from metabonk.world.unet import InnerModel

PRECISIONS = ("bf16", "fp8")


def _require_triton() -> None:
    try:
        import triton  # noqa: F401
    except ImportError as e:  # CPU installs have no Triton; the fused path is CUDA-only
        raise MetabonkError("the fused world-model kernels need Triton (installed with CUDA builds of torch)") from e


Tensor = torch.Tensor
Act = tuple[Tensor, Tensor]
"""A raw activation (NHWC bf16) and its per-channel statistics [B, 2, C] (sum, sum of squares)."""

class FusedInner(InnerModel):
    """`InnerModel.forward` computed with fused Triton kernels (see the module docstring). It is an InnerModel
    holding the same sub-modules (its own conditioning is reused), so a FusedInner can be re-fused too."""

    def __init__(self, inner: InnerModel, precision: str = "bf16") -> None:
        nn.Module.__init__(self)  # adopts inner's modules instead of building new ones
        if precision not in PRECISIONS:
            raise MetabonkError(f"fused precision must be one of {PRECISIONS}, got '{precision}'")
        self.precision = precision
        # the original modules, under InnerModel's names: identical state_dict keys
        self.noise_emb = inner.noise_emb
        self.context_noise_emb = inner.context_noise_emb
        self.act_emb = inner.act_emb
        self.act_proj = inner.act_proj
        self.cond_proj = inner.cond_proj
        self.unet = inner.unet
        self.best: dict[tuple[Any, ...], dict[str, int]] = {}
        self.autotune = False
        """Time each new layer shape's launch configurations on first use and keep the fastest (CUDA only; see
        `tuning()`); off: a new shape gets the first candidate."""
        self.tuned_all: dict[tuple[Any, ...], list[tuple[dict[str, int], float]]] = {}
        """Per layer shape: every candidate launch configuration that ran while tuning, and its time (ms)."""
        self.calls: Counter[tuple[Any, ...]] = Counter()
        """Launches per layer shape so far."""
        self.traffic_bytes = 0
        """Bytes the launches so far read and wrote in device memory (activations once each; weights, statistics
        and the halo re-reads that hit L2 left out): the HBM traffic a forward needs at the least."""
        self.repack()

    def repack(self) -> None:
        """(Re)build the kernels' weight copies from the current module weights."""
        fp8 = self.precision == "fp8"
        u = self.unet
        dev = u.conv_in.weight.device
        for m in u.modules():
            if isinstance(m, nn.Conv2d) and m is not u.conv_out and not pow2(m.out_channels):
                raise MetabonkError(f"fused U-Net needs power-of-two channel counts, got {m.out_channels}")
        self.specs: dict[int, ConvSpec] = {}
        self.norms: dict[int, NormSpec] = {}
        cin_in = u.conv_in.in_channels
        self.cin_pad = max(16, 16 * math.ceil(cin_in / 16))
        self.specs[id(u.conv_in)] = pack_conv(u.conv_in, cin_pad=self.cin_pad)
        mod_w, mod_b, offset = [], [], 0
        for m in u.modules():
            if isinstance(m, ResBlock):
                skip = m.skip if isinstance(m.skip, nn.Conv2d) else None
                self.specs[id(m.conv1)] = pack_conv(m.conv1, fp8=fp8)
                self.specs[id(m.conv2)] = pack_conv(m.conv2, fp8=fp8, skip=skip)
                for norm in (m.norm1, m.norm2):
                    c = norm.linear.out_features // 2
                    if c % norm.num_groups or not pow2(c // norm.num_groups):
                        raise MetabonkError(
                            f"fused group norm needs power-of-two channels per group, got {c}/{norm.num_groups}"
                        )
                    self.norms[id(norm)] = NormSpec(c, norm.num_groups, 1e-5, offset)
                    mod_w.append(norm.linear.weight.detach().float())
                    mod_b.append(norm.linear.bias.detach().float())
                    offset += 2 * c
        for down in u.downsample:
            if not isinstance(down, nn.Identity):
                self.specs[id(down.conv)] = pack_conv(down.conv)
        for up in u.upsample:
            if not isinstance(up, nn.Identity):
                self.specs[id(up.conv)] = pack_conv(up.conv, upsample=True)
        self.specs[id(u.conv_out)] = pack_conv(u.conv_out, fp8=fp8)
        g = u.norm_out
        const = torch.cat([g.weight.detach().float() - 1, g.bias.detach().float()])[None].contiguous()
        self.norms[id(g)] = NormSpec(g.num_channels, g.num_groups, g.eps, -1, const.to(dev))
        mod_dtype = torch.bfloat16 if dev.type == "cuda" and fp8 else torch.float32
        self.mod_weight = torch.cat(mod_w).to(dev, mod_dtype)
        self.mod_bias = torch.cat(mod_b).to(dev, mod_dtype)
        # per forward: one [B, 2, c] statistics slice for each conv but the output conv (sized by the widest)
        self.stats_slices = len(self.specs) - 1
        self.stats_width = max(s.n_pad for s in self.specs.values())

    # ---- kernel launches -----------------------------------------------------------------------------------
    def _act_dtype(self) -> torch.dtype:
        return torch.float8_e4m3fn if self.precision == "fp8" else torch.bfloat16

    def norm_act(
        self, parts: list[Act], norm: NormSpec, mods: Tensor | None, skip_w: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """SiLU(norm(concat(parts)) * (1 + scale) + shift) as one NHWC tensor (the next conv's input), and with
        `skip_w` [cout, C] the 1x1 convolution of concat(parts) (raw, bf16, no bias) from the same pass."""
        from metabonk.world.fused_kernels import norm_act_kernel

        B, H, W = parts[0][0].shape[:3]
        ctot = sum(t.shape[3] for t, _ in parts)
        if ctot != norm.channels:
            raise MetabonkError(f"fused norm expects {norm.channels} channels, got {ctot}")
        cpg = ctot // norm.groups
        if norm.offset < 0:
            assert norm.const is not None
            table, col = norm.const, 0
        else:
            assert mods is not None
            table, col = mods, norm.offset
        fp8 = self.precision == "fp8"
        out = torch.empty(B, H, W, ctot, device=parts[0][0].device, dtype=self._act_dtype())
        hw = H * W
        if len(parts) > 2:
            raise MetabonkError("fused group norm takes at most two concatenated inputs")
        (x1, st1), (x2, st2) = parts[0], parts[-1]
        c1, c2 = x1.shape[3], (x2.shape[3] if len(parts) == 2 else 0)
        if c1 % cpg:
            raise MetabonkError("fused group norm: a group straddles two concatenated inputs")
        scale, shift = table[:, col : col + ctot], table[:, col + ctot : col + 2 * ctot]
        ns = 0
        skip = out
        if skip_w is not None:
            if skip_w.shape[1] != ctot:
                raise MetabonkError("fused conv: skip inputs do not match the 1x1 skip weights")
            ns = skip_w.shape[0]
            skip = torch.empty(B, H, W, ns, device=out.device, dtype=torch.bfloat16)

        def run(cfg: dict[str, int], _stats: Tensor | None = None) -> None:
            norm_act_kernel[(B * hw // cfg["BP"],)](
                x1, st1, x2, st2, scale, shift, out, skip_w if skip_w is not None else st1, skip,
                hw, 1.0 / hw, norm.eps, table.stride(0) if table.shape[0] > 1 else 0,
                C1=c1, C2=c2, CPG=cpg, FP8_OUT=fp8, BP=cfg["BP"], NS=ns, UPCAST=_interpreting(),
                num_warps=cfg["num_warps"],
            )

        key = ("norm_act", ctot, len(parts), str(out.dtype), B, H, W, ns)
        self.calls[key] += 1
        run(self._config(key, hw, norm_candidates(hw), run, None))
        self.traffic_bytes += sum(_nbytes(t) for t, _ in parts) + _nbytes(out) + (_nbytes(skip) if ns else 0)
        return out, (skip if ns else None)

    def conv(
        self,
        spec: ConvSpec,
        x: Tensor,
        stats: Tensor | None,
        residual: Tensor | None = None,
        out_dtype: torch.dtype = torch.bfloat16,
    ) -> Tensor:
        """One fused convolution of NHWC x; accumulates output statistics into `stats` [B, 2, cout] if given."""
        B, Hin, Win, cin = x.shape
        if cin != spec.cin:
            raise MetabonkError(f"fused conv expects {spec.cin} input channels, got {cin}")
        if spec.upsample:
            Ho, Wo = 2 * Hin, 2 * Win
        else:
            Ho, Wo = (Hin - 1) // spec.stride + 1, (Win - 1) // spec.stride + 1
        out = torch.empty(B, Ho, Wo, spec.cout, device=x.device, dtype=out_dtype)
        fp8 = spec.w.dtype == torch.float8_e4m3fn
        consts = {
            "CIN": cin, "COUT": spec.cout, "KSIZE": spec.ksize, "STRIDE": spec.stride, "SUBPIXEL": spec.upsample,
            "WSCALE": fp8, "RESIDUAL": residual is not None, "STATS": stats is not None,
            "BN": spec.n_pad, "BK": block_k(cin, fp8),
        }
        dummy = spec.bias
        args = (
            x, spec.w, spec.wscale if fp8 else dummy, spec.bias, residual if residual is not None else dummy, out,
        )
        grid_hw = Hin * Win if spec.upsample else Ho * Wo  # pixels per sample the program grid walks
        key = (tuple(consts.values()), str(x.dtype), B, Ho, Wo)
        self.calls[key] += 1
        tma_width = Win if spec.stride == 1 else 0  # the grid's width (low-resolution for sub-pixel convs)
        cands = cached_conv_candidates(grid_hw, cin, spec.n_pad, tma_width, x.element_size(), not spec.upsample)
        dims = (Hin, Win, Ho, Wo)
        phases = 4 if spec.upsample else 1
        cfg = self._config(key, grid_hw, cands,
                           lambda c, st: self._launch(args, st, dims, B * grid_hw, phases, consts, c), stats)
        self._launch(args, stats if stats is not None else dummy, dims, B * grid_hw, phases, consts, cfg)
        self.traffic_bytes += _nbytes(x) + _nbytes(out) + (_nbytes(residual) if residual is not None else 0)
        return out

    @staticmethod
    def _launch(args: tuple[Tensor, ...], stats: Tensor, dims: tuple[int, int, int, int], pixels: int, phases: int,
                consts: dict[str, Any], cfg: dict[str, int]) -> None:
        from metabonk.world.fused_kernels import conv_kernel

        bm = cfg["BM"]
        consts = {**consts, "BK": cfg.get("BK", consts["BK"])}
        if cfg.get("TMA"):
            _launch_tma(args, stats, dims, pixels, phases, consts, cfg)
            return
        conv_kernel[(pixels // bm, phases)](*args, stats, *dims, **consts, BM=bm, NUM_STAGES=cfg["NUM_STAGES"],
                                            UPCAST=_interpreting(), SWAP=bool(cfg["SWAP"]),
                                            num_warps=cfg["num_warps"])

    def _config(self, key: tuple[Any, ...], hw: int, cands: Sequence[dict[str, int]],
                run: Callable[[dict[str, int], Tensor], None], stats: Tensor | None) -> dict[str, int]:
        """The launch configuration for a layer shape: the fastest candidate if `tuning()` saw it, else the first."""
        if key in self.best:
            return self.best[key]
        if not cands:
            raise MetabonkError(f"fused kernels need a power-of-two output size of at least 16 pixels, got {hw}")
        if not self.autotune:
            return cands[0]
        from triton.testing import do_bench

        scratch = torch.zeros_like(stats) if stats is not None else torch.zeros(1, device=self.mod_bias.device)
        best, best_t = cands[0], float("inf")
        for cfg in cands:
            try:
                t = do_bench(lambda cfg=cfg: run(cfg, scratch), warmup=3, rep=15)
            except Exception:  # a configuration the compiler cannot fit (registers, shared memory) is skipped
                continue
            self.tuned_all.setdefault(key, []).append((cfg, t))
            if t < best_t:
                best, best_t = cfg, t
        self.best[key] = best
        return best

    @property
    def tuned_ms(self) -> dict[tuple[Any, ...], float]:
        """Per layer shape: the fastest launch's time (ms) measured while tuning (a per-layer profile)."""
        return {key: min(t for _, t in timed) for key, timed in self.tuned_all.items()}

    # ---- forward -------------------------------------------------------------------------------------------
    def _block(self, blk: ResBlock, parts: list[Act], mods: Tensor, stats: tuple[Tensor, Tensor]) -> Act:
        spec2 = self.specs[id(blk.conv2)]
        a1, skip = self.norm_act(parts, self.norms[id(blk.norm1)], mods, skip_w=spec2.ws)
        st1, st2 = stats
        h = self.conv(self.specs[id(blk.conv1)], a1, st1)
        a2, _ = self.norm_act([(h, st1)], self.norms[id(blk.norm2)], mods)
        if skip is None:
            if len(parts) != 1:
                raise MetabonkError("fused res-block: identity skip with concatenated input")
            skip = parts[0][0]
        return self.conv(spec2, a2, st2, residual=skip), st2

    def forward(
        self,
        noisy_BCHW: Tensor,
        c_noise_B: Tensor,
        context_BKCHW: Tensor,
        actions_BK: Tensor,
        c_noise_context_B: Tensor,
    ) -> Tensor:
        if not noisy_BCHW.is_cuda and not _interpreting():
            raise MetabonkError("the fused world-model kernels run on CUDA only")
        H, W = noisy_BCHW.shape[2:]
        if not (pow2(H) and pow2(W)):
            raise MetabonkError(f"the fused U-Net needs power-of-two frame sizes, got {H}x{W}")
        # FP8 on a GPU: the conditioning MLP and the AdaGN projection on bf16 tensor cores too (fp32 they were ~1 %
        # of the sampler's time; their error is small beside e4m3's); the norm pass reads scale/shift into fp32
        with torch.no_grad():
            with torch.autocast("cuda", torch.bfloat16, enabled=self.mod_weight.dtype == torch.bfloat16):
                cond = self.conditioning(c_noise_B, actions_BK, c_noise_context_B)
                mods = F.linear(cond.to(self.mod_weight.dtype), self.mod_weight, self.mod_bias)
            return self._unet(pack_input(noisy_BCHW, context_BKCHW, self.cin_pad), mods).permute(0, 3, 1, 2)

    def _unet(self, xin: Tensor, mods: Tensor) -> Tensor:
        u = self.unet
        B, dev = xin.shape[0], xin.device
        pool = torch.zeros(self.stats_slices * B * 2 * self.stats_width, device=dev, dtype=torch.float32)  # 1 memset
        used = [0]

        def new_stats(c: int) -> Tensor:  # a contiguous [B, 2, c] slice of the pool
            n = B * 2 * c
            st = pool[used[0] : used[0] + n].view(B, 2, c)
            used[0] += n
            return st

        def with_stats(spec: ConvSpec, x: Tensor) -> Act:
            st = new_stats(spec.cout)
            return self.conv(spec, x, st), st

        h = with_stats(self.specs[id(u.conv_in)], xin)
        hs = [h]
        for blocks, down in zip(u.down, u.downsample, strict=True):
            for blk in blocks:
                h = self._block(blk, [h], mods, (new_stats(blk.conv1.out_channels), new_stats(blk.conv2.out_channels)))
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = with_stats(self.specs[id(down.conv)], h[0])
                hs.append(h)
        for blk in u.mid:
            h = self._block(blk, [h], mods, (new_stats(blk.conv1.out_channels), new_stats(blk.conv2.out_channels)))
        for blocks, up in zip(u.up, u.upsample, strict=True):
            for blk in blocks:
                h = self._block(blk, [h, hs.pop()], mods,
                                (new_stats(blk.conv1.out_channels), new_stats(blk.conv2.out_channels)))
            if not isinstance(up, nn.Identity):
                h = with_stats(self.specs[id(up.conv)], h[0])
        a, _ = self.norm_act([h], self.norms[id(u.norm_out)], None)
        return self.conv(self.specs[id(u.conv_out)], a, None, out_dtype=torch.float32)

    @contextlib.contextmanager
    def tuning(self) -> Iterator[None]:
        """Inside, each new layer shape's launch configurations are timed on its real inputs and the fastest kept;
        later forwards of the same shapes use it (`autotune` for the duration). Run the sampler once inside, before
        capturing a CUDA graph."""
        before, self.autotune = self.autotune, True
        try:
            yield
        finally:
            self.autotune = before


def _launch_tma(args: tuple[Tensor, ...], stats: Tensor, dims: tuple[int, int, int, int], pixels: int, phases: int,
                consts: dict[str, Any], cfg: dict[str, int]) -> None:
    """Launch `conv_tma_kernel`: descriptors of the input ([B, H, W, C], boxes of BM / W whole rows), the weights
    (2-D, one row block per output phase) and, with EPI, the residual and output ([pixels, C])."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    from metabonk.world.fused_kernels import conv_tma_kernel

    x, w, res, out = args[0], args[1].flatten(0, -2), args[4], args[5]
    H, W = dims[0], dims[1]  # the grid the tiles walk: the input's (stride 1, or sub-pixel's low resolution)
    bm, bk, bn = cfg["BM"], consts["BK"], consts["BN"]
    xd = TensorDescriptor(x, list(x.shape), list(x.stride()), [1, bm // W, W, bk])
    wd = TensorDescriptor(w, list(w.shape), list(w.stride()), [bn, bk])
    epi = bool(cfg.get("EPI")) and consts["COUT"] == bn and not consts["SUBPIXEL"]
    rd = od = None
    if epi:  # [pixels, channels] views: a tile's rows are consecutive pixels of one sample
        od = TensorDescriptor(out, [pixels, bn], [bn, 1], [bm, bn])
        if consts["RESIDUAL"]:
            rd = TensorDescriptor(res, [pixels, bn], [bn, 1], [bm, bn])
    tiles = pixels // bm
    programs = min(tiles, cfg["PERSIST"] * _sm_count(x.device)) if cfg.get("PERSIST") else tiles
    keys = ("CIN", "COUT", "KSIZE", "SUBPIXEL", "WSCALE", "RESIDUAL", "STATS", "BN", "BK")
    conv_tma_kernel[(programs, phases)](
        xd, wd, *args[2:], stats, rd, od, H, W, tiles, **{k: consts[k] for k in keys}, TH=bm // W, TW=W,
        NUM_STAGES=cfg["NUM_STAGES"], UPCAST=_interpreting(), SWAP=bool(cfg["SWAP"]), TMA_EPI=epi,
        PERSIST=bool(cfg.get("PERSIST")), num_warps=cfg["num_warps"],
    )


@functools.cache
def _sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (1 under the interpreter, so tests walk several tiles each)."""
    return 1 if _interpreting() else torch.cuda.get_device_properties(device).multi_processor_count


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _interpreting() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET") == "1"


def fuse_denoiser(model: nn.Module, precision: str = "bf16") -> FusedInner:
    """Swap a WorldModel's denoiser network for its fused-kernel version (in place; state_dict keys unchanged)."""
    _require_triton()
    if next(model.parameters()).device.type != "cuda" and not _interpreting():
        raise MetabonkError("the fused world-model kernels run on CUDA only (use --device cuda, or eager kernels)")
    fused = FusedInner(model.denoiser.inner, precision)  # type: ignore[union-attr,arg-type]
    model.denoiser.inner = fused  # type: ignore[union-attr]
    return fused
