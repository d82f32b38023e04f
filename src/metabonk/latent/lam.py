"""Latent action model (Genie-style, on pixels): a VQ code per transition, learned by predicting x_{t+1}.

The encoder sees the window (x_{t-k..t}, x_{t+1}) and emits one continuous latent, quantised to one of a few
codes. The decoder sees only the past frames x_{t-k..t} and the code, and must predict x_{t+1}; because the
code is a handful of bits, it can only carry what changes between frames and is not predictable from the
past — the action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from metabonk.common.checkpoint import Checkpointed, config_from_dict
from metabonk.common.errors import MetabonkError
from metabonk.latent.frames import clip_windows, to_unit
from metabonk.latent.independence import ConsecutiveCodeMI, joint_mutual_information, soft_assign
from metabonk.latent.vq import VectorQuantizer, VQConfig, codebook_usage_tensors

KIND = "lam"


@dataclass
class LAMConfig:
    """Shape of the latent action model."""

    context: int = 1
    """Past frames besides x_t the model sees (k): a window holds k + 2 frames."""
    width: int = 16
    """Base channel width of the conv branches."""
    max_shift: int = 2
    """Largest pixel shift the motion features and the decoder's shift kernels cover."""
    frame_size: int = 64
    """Square frame size the model was trained on (informational; any size divisible by 8 works)."""
    crop: int = 0
    """Model only a centred crop of this size (0 = the whole frame): with a follow camera, the ground's
    motion shows everywhere, so a crop keeps the action signal at a fraction of the compute."""
    object_shift: int = 0
    """Largest per-pixel displacement of the encoder's *object-motion* features (0 = off): for each
    consecutive pair of frames, a local cost volume (shifts along one axis at a time, so 4s + 1 of them)
    gives every changed pixel its displacement, averaged over
    8x8 cells. A small object whose motion is the action (Pong's paddle, up to 6 px per step at 64x64) is a
    handful of pixels the conv branch needs thousands of steps to find; these features hand it over."""
    object_pool: str = "cells"
    """How the object-motion features are pooled (`pooled_motion`): "cells" (an 8x8 grid) or "stripes" (8 columns
    and 8 rows, each the whole frame long: position-invariant along the stripe)."""
    change_weight: float = 0.0
    """Extra loss weight of pixels that change within the window: each pixel's squared error counts
    1 + change_weight where any consecutive pair of frames differs there (mask dilated by one pixel), else 1
    (0 = plain MSE). Where the action moves a few pixels of a static frame (Pong's paddle), plain MSE is
    dominated by copying x_t and the code learns nothing; with a follow camera (Arena) nearly every pixel
    changes and the weight does little."""
    decoder_blocks: int = 0
    """Extra residual conv blocks at half resolution in the decoder, dilated 2, 4, 8, ...: a receptive field
    wide enough to redraw an object that moves several pixels per step (Pong's paddle: up to 6 px at 64x64),
    which the default decoder (reach 8 px) cannot do. 0 = none (the Arena decoder)."""
    decoder_motion: bool = False
    """Give the decoder the per-pixel motion (`pixel_motion`, shifts up to `object_shift`) of each pair of
    consecutive context frames: how each object was already moving, so a code can say how that motion changed
    (a control that sets acceleration, as Pong's does) instead of where the object went. Needs object_shift > 0."""
    change_threshold: float = 0.04
    """Mean absolute channel difference (in [-1, 1] units) above which a pixel counts as changed."""
    trunk: str = "pooled"
    """Conv branch of the encoder. "pooled": three stride-2 blocks average-pooled to 4x4 (cheap; enough when
    the action moves the whole view, as Arena's follow camera does). "fullres": a stride-1 3x3 stem, then
    three stride-2 blocks, flattened so each feature keeps its position (width*2 x (size/8)^2 features): for
    a small object whose motion is the action. On Pong a supervised classifier on this trunk reached 87 %
    movement accuracy in 1,500 CPU steps, where the pooled trunk stayed at the 35 % majority."""
    independence_weight: float = 0.0
    """Weight of the penalty on the mutual information of consecutive codes I(z_{t-1}; z_t) (0 = off; see
    `metabonk.latent.independence`): under a random policy consecutive actions are independent, while what an
    object with inertia did is not. When on, training draws windows one frame longer and encodes both
    transitions (the batch holds twice as many)."""
    independence_temperature: float = 0.2
    """Softness of the assignments the penalty's gradient flows through, relative to the mean squared
    distance from a latent to the codes."""
    vq: VQConfig = field(default_factory=VQConfig)
    """The code bottleneck."""

    @property
    def window(self) -> int:
        return self.context + 2

    @property
    def train_window(self) -> int:
        """Frames per training window: one more than `window` when consecutive codes are penalised."""
        return self.window + (1 if self.independence_weight > 0 else 0)


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    k = 4 if stride == 2 else 3
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, 1), nn.SiLU())


TRUNKS = ("pooled", "fullres")


def conv_trunk(config: LAMConfig, cin: int) -> tuple[nn.Sequential, int]:
    """The encoder's conv branch for `config.trunk` over `cin` input channels, and its output width."""
    w = config.width
    if config.trunk == "pooled":
        return nn.Sequential(_block(cin, w, 2), _block(w, 2 * w, 2), _block(2 * w, 2 * w, 2),
                             nn.AdaptiveAvgPool2d(4), nn.Flatten()), 2 * w * 16
    if config.trunk == "fullres":
        size = config.crop if 0 < config.crop < config.frame_size else config.frame_size
        if size % 8:
            raise MetabonkError(f"the fullres trunk needs a frame (or crop) size divisible by 8, got {size}")
        return nn.Sequential(_block(cin, w, 1), _block(w, w, 2), _block(w, 2 * w, 2), _block(2 * w, 2 * w, 2),
                             nn.Flatten()), 2 * w * (size // 8) ** 2
    raise MetabonkError(f"unknown encoder trunk {config.trunk!r}: expected one of {', '.join(TRUNKS)}")


def shifted_stack(x_BCHW: torch.Tensor, s: int) -> torch.Tensor:
    """All (2s+1)^2 translations of x by up to s pixels (edges replicated): [B, (2s+1)^2, C, H, W]."""
    h, w = x_BCHW.shape[-2:]
    pad = F.pad(x_BCHW, (s, s, s, s), mode="replicate")
    return torch.stack([pad[..., s + dy: s + dy + h, s + dx: s + dx + w]
                        for dy in range(-s, s + 1) for dx in range(-s, s + 1)], dim=1)


def change_weights(x_BTCHW: torch.Tensor, weight: float, threshold: float) -> torch.Tensor:
    """Per-pixel loss weights [B,1,H,W]: 1 + weight where any consecutive pair of frames of the window differs
    by more than `threshold` (mean absolute channel difference), dilated by one pixel; 1 elsewhere."""
    diff = (x_BTCHW[:, 1:] - x_BTCHW[:, :-1]).abs().mean(dim=2)  # [B, T-1, H, W]
    changed = (diff > threshold).any(dim=1, keepdim=True).float()
    changed = F.max_pool2d(changed, 3, stride=1, padding=1)
    return 1 + weight * changed


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of weights * squared error over pixels and channels, divided by the mean weight (so a uniform
    weight gives plain MSE and the loss keeps its scale)."""
    err = (pred - target).pow(2).mean(dim=1, keepdim=True)
    return (weights * err).sum() / weights.sum().clamp_min(1e-8)


OBJECT_CELLS = 8
"""Object-motion features are averaged over an OBJECT_CELLS x OBJECT_CELLS grid of cells."""


def axis_shifts(x_BCHW: torch.Tensor, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Translations of x along one axis at a time, by -s..s pixels (edges replicated): a stack
    [B, 4s+1, C, H, W] and the (dy, dx) of each (the zero shift once)."""
    h, w = x_BCHW.shape[-2:]
    pad = F.pad(x_BCHW, (s, s, s, s), mode="replicate")
    shifts = [(d, 0) for d in range(-s, s + 1)] + [(0, d) for d in range(-s, s + 1) if d != 0]
    stack = torch.stack([pad[..., s + dy: s + dy + h, s + dx: s + dx + w] for dy, dx in shifts], dim=1)
    # the same table built on the device: a copy from the host would wait for the GPU on every training step
    d = torch.arange(-s, s + 1, dtype=x_BCHW.dtype, device=x_BCHW.device)
    zero = torch.zeros_like(d)
    table = torch.cat([torch.stack([d, zero], 1), torch.stack([zero[:-1], torch.cat([d[:s], d[s + 1:]])], 1)])
    return stack, table


@torch.no_grad()
def pixel_motion(a_BCHW: torch.Tensor, b_BCHW: torch.Tensor, s: int, threshold: float = 0.04,
                 temperature: float = 0.01) -> torch.Tensor:
    """Per-pixel displacement of what changed from frame a to b: [B, 3, H, W] = (dy, dx) in units of s where
    the pixel changed (0 elsewhere), and the changed mask (dilated by one pixel). Each pixel of b takes the
    soft-argmin over axis-aligned shifts d (|d| <= s) of |b(p) - a(p + d)| (grey levels, 3x3 box-filtered)."""
    a, b = a_BCHW.mean(1, keepdim=True), b_BCHW.mean(1, keepdim=True)
    stack, shifts = axis_shifts(a, s)  # stack[:, i](p) = a(p + shifts[i])
    cost = F.avg_pool2d((stack - b[:, None]).abs()[:, :, 0], 3, 1, 1)  # [B, n, H, W]
    weights = (-cost / temperature).softmax(1)
    flow = -torch.einsum("bnhw,nc->bchw", weights, shifts / s)  # content at a(p + d) moved by -d
    changed = ((b - a).abs() > threshold).float()
    changed = F.max_pool2d(changed, 3, stride=1, padding=1)
    return torch.cat([changed * flow, changed], dim=1)


def window_motion(x_BTCHW: torch.Tensor, s: int) -> list[torch.Tensor]:
    """`pixel_motion` of each consecutive pair of frames of a window (T - 1 maps)."""
    return [pixel_motion(x_BTCHW[:, i], x_BTCHW[:, i + 1], s) for i in range(x_BTCHW.shape[1] - 1)]


def cell_motion(motion_B3HW: torch.Tensor, cells: int | tuple[int, int] = OBJECT_CELLS) -> torch.Tensor:
    """A `pixel_motion` map averaged over a grid of cells (8x8 by default): [B, 3, *cells] = the mean (dy, dx) of
    the changed pixels of each cell, and the cell's changed fraction."""
    mass = F.adaptive_avg_pool2d(motion_B3HW[:, 2:], cells)
    mean_flow = F.adaptive_avg_pool2d(motion_B3HW[:, :2], cells) / mass.clamp_min(1e-3)
    return torch.cat([mean_flow, mass], dim=1)


OBJECT_POOLS = ("cells", "stripes")


def pooled_motion(motion_B3HW: torch.Tensor, pool: str) -> torch.Tensor:
    """Object-motion features [B, F] of one frame pair. "cells": `cell_motion` on the 8x8 grid (F = 192).
    "stripes": the same over 8 full-height columns and 8 full-width rows (F = 48): an object's motion lands in the
    same feature wherever it is along its stripe, so a classifier trained on a few thousand labels need not learn
    it once per cell (Pong's paddle travels the height of its column)."""
    if pool == "cells":
        return cell_motion(motion_B3HW).flatten(1)
    if pool == "stripes":
        return torch.cat([cell_motion(motion_B3HW, (1, OBJECT_CELLS)).flatten(1),
                          cell_motion(motion_B3HW, (OBJECT_CELLS, 1)).flatten(1)], dim=1)
    raise MetabonkError(f"unknown object-motion pooling {pool!r}: expected one of {', '.join(OBJECT_POOLS)}")


def object_motion(a_BCHW: torch.Tensor, b_BCHW: torch.Tensor, s: int, threshold: float = 0.04,
                  temperature: float = 0.01) -> torch.Tensor:
    """Displacement of what changed from frame a to b per cell: `cell_motion` of `pixel_motion`, [B, 3, 8, 8]."""
    return cell_motion(pixel_motion(a_BCHW, b_BCHW, s, threshold, temperature))


class ActionEncoder(nn.Module):
    """(x_{t-k..t}, x_{t+1}) -> one latent: a motion cost volume (how well each small shift of x_t
    explains x_{t+1}: camera motion) plus a conv branch over the window and x_{t+1} - x_t (object motion)."""

    def __init__(self, config: LAMConfig, now_index: int | None = None) -> None:
        """`now_index`: where x_t sits in the window (default: second to last, x_{t+1} last); an inverse model that
        looks ahead puts later frames after x_{t+1}."""
        super().__init__()
        self.shift = config.max_shift
        self.now = config.window - 2 if now_index is None else now_index
        if not 0 <= self.now <= config.window - 2:
            raise MetabonkError(f"x_t at index {self.now} leaves no x_(t+1) in a window of {config.window} frames")
        self.conv, conv_out = conv_trunk(config, 3 * (config.window + 1))
        n_shift = (2 * self.shift + 1) ** 2
        self.object_shift, self.object_pool = config.object_shift, config.object_pool
        per_pair = pooled_motion(torch.zeros(1, 3, 8, 8), self.object_pool).shape[1]  # (checks the pooling's name)
        n_obj = (config.window - 1) * per_pair if self.object_shift > 0 else 0
        self.head = nn.Sequential(nn.Linear(conv_out + n_shift + n_obj, 128), nn.SiLU(),
                                  nn.Linear(128, config.vq.code_dim - 2))
        r = torch.arange(-self.shift, self.shift + 1, dtype=torch.float32)
        grid = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1).reshape(-1, 2)
        self.register_buffer("shift_grid", grid / self.shift, persistent=False)

    def forward(self, x_BTCHW: torch.Tensor, pair_motion: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Latents [B, D]; `pair_motion`: the window's `window_motion` when the caller has it already."""
        now, nxt = x_BTCHW[:, self.now], x_BTCHW[:, self.now + 1]
        s = self.shift
        now_g, nxt_g = now.mean(1, keepdim=True), nxt.mean(1, keepdim=True)
        # L1, not L2: the sprite the camera follows stays put, and L2 lets it outweigh the ground.
        err = (shifted_stack(now_g, s) - nxt_g[:, None]).abs()[..., s:-s, s:-s].mean(dim=(2, 3, 4))
        cost = -(err / err.mean(dim=1, keepdim=True).clamp_min(1e-6)).log().clamp(-5, 5)
        feats = self.conv(torch.cat([x_BTCHW.flatten(1, 2), nxt - now], dim=1))
        # Motion prior: the expected ground displacement (soft-argmin of the cost volume) is two of the
        # latent's dimensions, so the codebook's clusters split by direction from the first steps.
        motion = (4 * cost).softmax(-1) @ self.shift_grid
        parts = [feats, cost]
        if self.object_shift > 0:
            if pair_motion is None:
                pair_motion = window_motion(x_BTCHW, self.object_shift)
            parts += [pooled_motion(m, self.object_pool) for m in pair_motion]
        return torch.cat([self.head(torch.cat(parts, dim=1)), motion], dim=1)


class FiLM(nn.Module):
    """Scale and shift feature maps by a conditioning vector."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.proj(cond)[:, :, None, None].chunk(2, dim=1)
        return h * (1 + scale) + shift


class NextFrameDecoder(nn.Module):
    """Past frames + code -> x_{t+1}: the code picks a mix of shifts of x_t (CDNA-style kernels, Finn et al.
    2016), then a small code-conditioned conv net at half resolution corrects what shifting cannot explain."""

    def __init__(self, config: LAMConfig) -> None:
        super().__init__()
        w, d = config.width, config.vq.code_dim
        self.shift = config.max_shift
        self.kernel = nn.Sequential(nn.Linear(d, 64), nn.SiLU(), nn.Linear(64, (2 * self.shift + 1) ** 2))
        self.motion_shift = config.object_shift if config.decoder_motion else 0
        if config.decoder_motion and config.object_shift <= 0:
            raise MetabonkError("decoder_motion needs object_shift > 0 (the motion features' range)")
        cin = 3 * (config.context + 2) + (3 * config.context if self.motion_shift else 0)
        self.down = _block(cin, 2 * w, 2)
        self.mid = _block(2 * w, 2 * w, 1)
        self.film = FiLM(d, 2 * w)
        self.dilated = nn.ModuleList(
            nn.Conv2d(2 * w, 2 * w, 3, 1, padding=2 ** (i + 1), dilation=2 ** (i + 1))
            for i in range(config.decoder_blocks))
        self.dilated_film = nn.ModuleList(FiLM(d, 2 * w) for _ in range(config.decoder_blocks))
        self.up = nn.ConvTranspose2d(2 * w, w, 4, 2, 1)
        self.out = nn.Conv2d(w + cin, 3, 3, 1, 1)

    def forward(self, ctx_BTCHW: torch.Tensor, code_BD: torch.Tensor,
                motion: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x_{t+1} [B, 3, H, W]; `motion`: the context's `window_motion` when the caller has it already."""
        now = ctx_BTCHW[:, -1]
        weights = self.kernel(code_BD).softmax(-1)
        warped = (shifted_stack(now, self.shift) * weights[:, :, None, None, None]).sum(1)
        parts = [ctx_BTCHW.flatten(1, 2), warped]
        if self.motion_shift:
            parts += window_motion(ctx_BTCHW, self.motion_shift) if motion is None else motion
        inp = torch.cat(parts, dim=1)
        h = self.film(self.mid(self.down(inp)), code_BD)
        for conv, film in zip(self.dilated, self.dilated_film, strict=True):
            h = h + film(F.silu(conv(h)), code_BD)
        return warped + self.out(torch.cat([F.silu(self.up(h)), inp], dim=1))


class LatentActionModel(Checkpointed, nn.Module):
    """Encoder + VQ + decoder; `forward(batch) -> (loss, metrics)`, batch["frames"] uint8 [B,k+2,H,W,3]."""

    KIND = KIND
    CONFIG = LAMConfig

    @classmethod
    def config_from_dict(cls, data: dict[str, Any]) -> LAMConfig:
        return lam_config_from_dict(data)

    def __init__(self, config: LAMConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ActionEncoder(config)
        self.vq = VectorQuantizer(config.vq)
        self.decoder = NextFrameDecoder(config)
        if config.independence_weight > 0:
            self.pair_mi = ConsecutiveCodeMI(config.vq.num_codes)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def crop(self, frames: torch.Tensor) -> torch.Tensor:
        c, size = self.config.crop, frames.shape[-2]
        if c <= 0 or c >= size:
            return frames
        o = (size - c) // 2
        return frames[..., o: o + c, o: o + c, :]

    def _split(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_unit(self.crop(frames.to(self.device)))
        if x.shape[1] != self.config.window:
            raise ValueError(f"LAM expects windows of {self.config.window} frames, got {x.shape[1]}")
        return x, x[:, :-1]

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        frames = batch["frames"]
        pairs = self.config.independence_weight > 0 and frames.shape[1] == self.config.window + 1
        if pairs:  # windows of transitions t-1 and t, stacked along the batch
            frames = torch.cat([frames[:, :-1], frames[:, 1:]])
        x, ctx = self._split(frames)
        # the motion of every frame pair, once: the encoder reads all of it, the decoder the context's pairs
        motion = window_motion(x, self.config.object_shift) if self.config.object_shift > 0 else None
        z = self.encoder(x, motion)
        q, codes, commit = self.vq(z)
        pred = self.decoder(ctx, q, None if motion is None else motion[:-1])
        mse = F.mse_loss(pred, x[:, -1])
        recon = mse
        if self.config.change_weight > 0:
            w = change_weights(x.detach(), self.config.change_weight, self.config.change_threshold)
            recon = weighted_mse(pred, x[:, -1], w)
        loss = recon + commit
        extra: dict[str, torch.Tensor] = {}
        if pairs:
            assign = soft_assign(z, self.vq.codebook, self.config.independence_temperature)
            prev, cur = assign.chunk(2)
            penalty = self.pair_mi(prev, cur)
            loss = loss + self.config.independence_weight * penalty
            extra = {"pair_pmi": penalty.detach(), "pair_mi": joint_mutual_information(self.pair_mi.joint)}
        usage = codebook_usage_tensors(codes, self.config.vq.num_codes)
        return loss, {"loss": loss.detach(), "mse": mse.detach(), "recon": recon.detach(), "commit": commit.detach(),
                      **extra, **usage}

    @torch.no_grad()
    def infer_codes(self, frames: torch.Tensor) -> torch.Tensor:
        """Codes (int64 [B]) of windows uint8 [B,k+2,H,W,3], or of a clip uint8 [T+1,H,W,3] (-> [T])."""
        if frames.dim() == 4:
            frames = clip_windows(frames, self.config.context)
        x, _ = self._split(frames)
        return self.vq.nearest(self.encoder(x))

    @torch.no_grad()
    def latents(self, frames: torch.Tensor) -> torch.Tensor:
        """Continuous (pre-quantisation) latents float [B,D] of windows uint8 [B,k+2,H,W,3]."""
        x, _ = self._split(frames)
        return self.encoder(x)

    @torch.no_grad()
    def predict(self, context: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Next frame float [B,h,w,3] in [0,1] (h = crop or H) from past frames uint8 [B,k+1,H,W,3]
        (or a full window) and codes [B]."""
        x = to_unit(self.crop(context.to(self.device)))
        ctx = x[:, : self.config.context + 1]
        pred = self.decoder(ctx, self.vq.lookup(codes.to(self.device)))
        return ((pred.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)

    @torch.no_grad()
    def next_frame_mse(self, frames: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Per-window MSE (in [-1,1] units) of the prediction of x_{t+1} under the given codes."""
        x, ctx = self._split(frames)
        pred = self.decoder(ctx, self.vq.lookup(codes.to(self.device)))
        return (pred - x[:, -1]).pow(2).mean(dim=(1, 2, 3))
def lam_config_from_dict(data: dict[str, Any]) -> LAMConfig:
    """LAMConfig from JSON, nested VQConfig included."""
    vq = config_from_dict(VQConfig, data.get("vq", {}))
    return config_from_dict(LAMConfig, {**data, "vq": vq})
