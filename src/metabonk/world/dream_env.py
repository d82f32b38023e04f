"""DreamEnv: a batched environment that steps by sampling the world model (vector-env API, torch tensors).

    env = DreamEnv(WorldModel.load(ckpt, device="cuda"))
    pixels, info = env.reset(frames_NKHWC_uint8, actions_NK)   # k real frames, actions taken at them
    pixels, reward, terminated, truncated, info = env.step(actions_N)

Actions are ints in [0, num_actions): real actions or latent-action codes, whichever the model learned.
No autoreset: a row that ended keeps dreaming; mask it with the returned flags and call `reset` again.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from metabonk.common.errors import MetabonkError
from metabonk.world.denoiser import frames_to_float, frames_to_uint8
from metabonk.world.world_model import WorldModel


def _as_tensor(x: Any, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)


KERNELS = ("eager", "fused_bf16", "fused_fp8")
"""How DreamEnv runs the denoiser: PyTorch modules, or the fused Triton kernels (CUDA; docs/world.md)."""


class DreamEnv:
    """N dreams stepped together on the model's device."""

    def __init__(
        self,
        model: WorldModel,
        num_steps: int | None = None,
        max_episode_steps: int = 1000,
        bf16: bool | None = None,
        seed: int | None = None,
        kernels: str = "eager",
        hard_fraction: float | None = None,
        hard_select: str = "difficulty",
    ) -> None:
        """`hard_fraction`: adaptive compute (`DiffusionSampler.sample_adaptive`): only that share of each
        step's frames, the hardest after one denoiser call, get the whole `num_steps` schedule
        (`hard_select="random"`: a random share instead, the control for the difficulty signal)."""
        if kernels not in KERNELS:
            raise MetabonkError(f"kernels must be one of {', '.join(KERNELS)}, got '{kernels}'")
        if kernels != "eager":  # swaps the model's denoiser network in place (state_dict unchanged)
            from metabonk.world.fused_unet import fuse_denoiser

            # on a GPU, each layer shape's launch configurations are timed on first use (the first step at a
            # new batch size) and the fastest kept
            fuse_denoiser(model, kernels.removeprefix("fused_")).autotune = model.device.type == "cuda"
        self.model = model.eval()
        cfg = model.config
        self.num_actions = cfg.num_actions
        self.num_context = cfg.num_context
        self.frame_size = cfg.frame_size
        self.num_steps = num_steps or cfg.sampler.num_steps
        if hard_fraction is not None and not 0.0 <= hard_fraction <= 1.0:
            raise MetabonkError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
        self.hard_fraction, self.hard_select = hard_fraction, hard_select
        self.max_episode_steps = max_episode_steps
        self.device = model.device
        use_bf16 = self.device.type == "cuda" if bf16 is None else bf16
        self._autocast = (
            (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext
        )
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.frames: torch.Tensor | None = None  # float [N,k,C,H,W] in [-1, 1]
        self.past_actions: torch.Tensor | None = None  # long [N,k-1]
        self.elapsed: torch.Tensor | None = None

    @property
    def num_envs(self) -> int:
        return 0 if self.frames is None else int(self.frames.shape[0])

    def reset(self, context_frames: Any, context_actions: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """Start N dreams from real frames uint8 [N,k,H,W,3] and the actions taken at them [N,k]
        (store convention: action[t] is taken at obs[t]; the last one is replaced by `step`'s action,
        so [N,k-1] is accepted too). Returns the last context frame uint8 [N,H,W,3] and an info dict."""
        k = self.num_context
        frames = _as_tensor(context_frames, self.device)
        if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[1] != k:
            raise MetabonkError(
                f"DreamEnv.reset needs uint8 frames [N,{k},H,W,3], got {tuple(frames.shape)} {frames.dtype}"
            )
        if frames.shape[2] != self.frame_size or frames.shape[3] != self.frame_size:
            raise MetabonkError(f"the world model dreams {self.frame_size}px frames, got {frames.shape[2]}px")
        actions = _as_tensor(context_actions, self.device, torch.long)
        if actions.ndim != 2 or actions.shape[0] != frames.shape[0] or actions.shape[1] not in (k - 1, k):
            raise MetabonkError(f"context_actions must be [N,{k}] or [N,{k - 1}], got {tuple(actions.shape)}")
        self._check_actions(actions)
        self.frames = frames_to_float(frames)
        self.past_actions = actions[:, : k - 1] if actions.shape[1] == k else actions
        self.elapsed = torch.zeros(frames.shape[0], dtype=torch.long, device=self.device)
        return frames[:, -1], {"step": self.elapsed.clone()}

    def _check_actions(self, actions: torch.Tensor, on_device: bool = False) -> None:
        """Actions in [0, num_actions). With `on_device` on a GPU the check is queued on the device
        (`torch._assert_async`) instead of copying min/max to the host, which would stall every dream step; an
        out-of-range id then fails the next synchronising call with this message. On CPU it is checked here."""
        if on_device and actions.device.type == "cuda":
            ok = ((actions >= 0) & (actions < self.num_actions)).all()
            torch._assert_async(ok, f"DreamEnv.step: actions must be in [0, {self.num_actions})")
            return
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= self.num_actions):
            raise MetabonkError(
                f"actions must be in [0, {self.num_actions}), got range "
                f"[{int(actions.min())}, {int(actions.max())}]"
            )

    @torch.inference_mode()
    def step(
        self, actions: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Dream one step for every env. actions: int [N]. Returns pixels uint8 [N,H,W,3], reward float32 [N],
        terminated bool [N], truncated bool [N], info {"termination_prob", "step"}."""
        if self.frames is None or self.past_actions is None or self.elapsed is None:
            raise MetabonkError("DreamEnv.step called before reset")
        a = _as_tensor(actions, self.device, torch.long).reshape(-1)
        if a.shape[0] != self.num_envs:
            raise MetabonkError(f"step got {a.shape[0]} actions for {self.num_envs} envs")
        self._check_actions(a, on_device=True)
        acts = torch.cat([self.past_actions, a[:, None]], dim=1)
        noise = torch.randn(self.frames[:, 0].shape, device=self.device, generator=self.generator)
        with self._autocast():
            if self.hard_fraction is None:
                nxt = self.model.sampler.sample(self.frames, acts, self.num_steps, noise_BCHW=noise).float()
            else:
                nxt = self.model.sampler.sample_adaptive(
                    self.frames, acts, self.num_steps, self.hard_fraction, noise_BCHW=noise,
                    select=self.hard_select, generator=self.generator,
                ).float()
            stack = torch.cat([self.frames, nxt[:, None]], dim=1)
            reward, logit = self.model.reward_model.predict(stack, a)
        self.frames = stack[:, 1:]
        self.past_actions = acts[:, 1:]
        self.elapsed = self.elapsed + 1
        prob = torch.sigmoid(logit.float())
        terminated = prob > 0.5
        truncated = (self.elapsed >= self.max_episode_steps) & ~terminated
        info = {"termination_prob": prob, "step": self.elapsed.clone()}
        return frames_to_uint8(nxt), reward.float(), terminated, truncated, info


def contexts_from_store(
    store: Any,
    n: int,
    num_context: int,
    rng: np.random.Generator,
    episodes: list[int] | None = None,
    action_key: str = "action",
) -> tuple[np.ndarray, np.ndarray]:
    """n random starts from an episode store: frames uint8 [n,k,H,W,3] and the actions taken at them [n,k]."""
    w = store.sample_windows(n, num_context, rng, keys=("obs", action_key), episodes=episodes)
    return w["obs"][:, :num_context], w[action_key]
