"""What the PyTorch algorithms share: the jaxrl2 networks of `algorithms.nets` in PyTorch,
initialized as Flax initializes them, the random shift, the tanh-Gaussian, and `TorchAgent`,
which owns the K-step update, the RNG, Adam and the checkpoint state.

Images arrive as uint8 NumPy arrays and become float tensors inside the update. A stacked
observation (B, S, H, W, C) becomes (B, S*C, H, W), the channels in the order (s, c) that
`nets.stack_frames` uses, stored channels-last: PyTorch's CPU convolutions (oneDNN) prefer it
(docs/benchmarks.md). Vectors (B, S, D) become (B, S*D).

Determinism: `torch.use_deterministic_algorithms(True)`, a thread count fixed to the cores
this process may use, and every random draw from the agent's own `torch.Generator`, whose
state is part of `state_dict`.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]
# Images and convolution weights channels-last: faster than NCHW on this CPU (docs/benchmarks.md).
MEMORY_FORMAT = torch.channels_last


def make_deterministic() -> None:
    """Deterministic kernels and a fixed number of threads (the cores this process may use)."""
    torch.use_deterministic_algorithms(True)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, threads or 1))


def lecun_normal_(weight: torch.Tensor, fan_in: int, generator: torch.Generator) -> None:
    """Flax's default kernel init: a normal truncated at 2 std, of variance 1 / fan_in."""
    std = math.sqrt(1.0 / fan_in) / TRUNCATED_NORMAL_STD
    with torch.no_grad():
        weight.copy_(torch.nn.init.trunc_normal_(torch.empty_like(weight), 0.0, std, -2 * std,
                                                 2 * std, generator=generator))


def flax_init_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialize every Linear and Conv2d as flax.linen.Dense / Conv: LeCun-normal kernels,
    zero biases. LayerNorm keeps scale 1, bias 0, as in Flax."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            lecun_normal_(layer.weight, layer.weight[0].numel(), generator)
            nn.init.zeros_(layer.bias)
    return module


def mlp(inputs: int, hidden_dims, outputs: int | None = None) -> nn.Sequential:
    """Dense + ReLU per hidden width (`nets.MLP`), then a linear output layer if `outputs`."""
    layers = []
    for width in hidden_dims:
        layers += [nn.Linear(inputs, width), nn.ReLU()]
        inputs = width
    if outputs is not None:
        layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)


class PixelEncoder(nn.Module):
    """D4PG / jaxrl2 encoder (`nets.PixelEncoder`): 3x3 stride-2 VALID convs with ReLU ->
    Linear -> LayerNorm -> tanh. Input (B, C, 64, 64) float in [0, 1]."""

    def __init__(self, in_channels: int, channels, embed_dim: int, size: int = 64):
        super().__init__()
        layers = []
        for width in channels:
            layers += [nn.Conv2d(in_channels, width, 3, 2), nn.ReLU()]
            in_channels, size = width, (size - 3) // 2 + 1
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(in_channels * size * size, embed_dim),
                                  nn.LayerNorm(embed_dim), nn.Tanh())

    def forward(self, images):
        x = self.convs(images)
        # Flatten in (H, W, C) order, as Flax's NHWC reshape does.
        return self.head(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1))


class VectorEncoder(nn.Module):
    """For state vectors (`nets.VectorEncoder`): Linear -> LayerNorm -> tanh."""

    def __init__(self, inputs: int, embed_dim: int):
        super().__init__()
        self.head = nn.Sequential(nn.Linear(inputs, embed_dim), nn.LayerNorm(embed_dim), nn.Tanh())

    def forward(self, x):
        return self.head(x)


def make_encoder(obs_shape, frame_stack: int, channels, embed_dim: int) -> nn.Module:
    if len(obs_shape) == 3:
        encoder = PixelEncoder(frame_stack * obs_shape[-1], channels, embed_dim, obs_shape[0])
        return encoder.to(memory_format=MEMORY_FORMAT)
    return VectorEncoder(frame_stack * int(np.prod(obs_shape)), embed_dim)


def stack_frames(obs: np.ndarray) -> torch.Tensor:
    """(B, S, H, W, C) uint8 -> (B, S*C, H, W) uint8, channels-last in memory; (B, S, D) ->
    (B, S*D) float32."""
    x = torch.from_numpy(np.ascontiguousarray(obs))
    if x.ndim == 5:
        b, s, h, w, c = x.shape
        # (B, H, W, S, C) -> (B, H, W, S*C) is already the channels-last layout of (B, S*C, H, W).
        return x.permute(0, 2, 3, 1, 4).reshape(b, h, w, s * c).permute(0, 3, 1, 2)
    return x.reshape(x.shape[0], -1).float()


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1], channels-last; vectors unchanged."""
    if x.dtype == torch.uint8:
        return (x.float() / 255.0).contiguous(memory_format=MEMORY_FORMAT)
    return x


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """DrQ's augmentation (`nets.random_shift`): pad (B, C, H, W) by `pad` with edge values and
    crop back at one random offset per image. Done as two gathers at clamped indices, which
    is the same crop of the edge-padded image (row r of the crop is row clamp(r + o - pad) of
    the image), in the images' dtype: 3-10x faster here than indexing a padded float copy."""
    b, c, h, w = images.shape
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator) - pad
    rows = (torch.arange(h)[None] + offsets[:, :1]).clamp(0, h - 1)  # (B, H)
    cols = (torch.arange(w)[None] + offsets[:, 1:]).clamp(0, w - 1)  # (B, W)
    x = torch.gather(images, 2, rows[:, None, :, None].expand(b, c, h, w))
    return torch.gather(x, 3, cols[:, None, None, :].expand(b, c, h, w))


def tanh_gaussian_sample_and_log_prob(mean, log_std, generator):
    """a = tanh(u), u ~ N(mean, std^2), and log pi(a), from u (`nets.tanh_gaussian_sample_and_log_prob`)."""
    noise = torch.randn(mean.shape, generator=generator)
    pre_tanh = mean + log_std.exp() * noise
    gaussian = -0.5 * noise ** 2 - log_std - 0.5 * math.log(2.0 * math.pi)
    log_det = 2.0 * (math.log(2.0) - pre_tanh - nn.functional.softplus(-2.0 * pre_tanh))
    return torch.tanh(pre_tanh), (gaussian - log_det).sum(-1)


def cosine_decay(lr: float, step: int, total: int) -> float:
    """optax.cosine_decay_schedule(lr, total) at `step` (0 for the first update)."""
    total = max(total, 1)
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


class TorchAgent:
    """A PyTorch agent: subclasses build their modules in `__init__`, list their parameters in
    `self.param_groups` ({name: (parameters, decays)}: a group whose learning rate decays by
    the cosine), call `self._setup(seed, lr, total_updates)`, and write

        _one_update(batch) -> dict of 0-d tensors    (one gradient step; batch: one K index)
        _act(obs_tensor, explore) -> actions tensor

    `update` runs the K steps and syncs with the host once, when it reads the metrics."""

    def _setup(self, lr: float, total_updates: int, buffers: dict[str, list]) -> None:
        """Adam (optax.adam's defaults) per group, its moments made now, so the checkpoint's
        layout is the same before and after the first update; `buffers` name the tensors that
        are state but not trained (target networks)."""
        self.lr, self.total_updates = lr, total_updates
        self.optimizers = {name: torch.optim.Adam(params, lr=lr, eps=1e-8, foreach=True)
                           for name, (params, _) in self.param_groups.items()}
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    optimizer.state[p] = {"step": torch.zeros(()), "exp_avg": torch.zeros_like(p),
                                          "exp_avg_sq": torch.zeros_like(p)}
        self.buffers = buffers
        self.step = 0

    def _optimizer_step(self) -> None:
        for name, optimizer in self.optimizers.items():
            decays = self.param_groups[name][1]
            optimizer.param_groups[0]["lr"] = (cosine_decay(self.lr, self.step, self.total_updates)
                                              if decays else self.lr)
            optimizer.step()
        self.step += 1

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        k = batch["action"].shape[0]
        totals: dict[str, torch.Tensor] = {}
        for i in range(k):
            metrics = self._one_update({key: value[i] for key, value in batch.items()})
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value.detach()
        return {key: float(value) / k for key, value in totals.items()}  # the one host sync

    def initial_state(self, n: int):
        return None

    def act(self, obs: np.ndarray, state, explore: bool):
        with torch.no_grad():
            action = self._act(stack_frames(obs), bool(explore))
        return action.numpy().astype(np.float32), state

    # -- checkpoints: every tensor that changes, as NumPy arrays in a fixed layout ------------

    def _state_tensors(self) -> dict:
        params = {name: [p for p in ps] for name, (ps, _) in self.param_groups.items()}
        moments = {name: [[opt.state[p][key] for p in group["params"]]
                          for group in opt.param_groups for key in ("step", "exp_avg", "exp_avg_sq")]
                   for name, opt in self.optimizers.items()}
        return {"params": params, "adam": moments, "buffers": self.buffers}

    def state_dict(self) -> dict:
        tensors = self._state_tensors()
        arrays = {group: {name: [np.array(t.detach().numpy()) if isinstance(t, torch.Tensor) else
                                 [np.array(x.detach().numpy()) for x in t] for t in values]
                          for name, values in part.items()} for group, part in tensors.items()}
        return {**arrays, "rng": self.generator.get_state().numpy().copy(),
                "step": np.asarray(self.step, np.int64)}

    def load_state_dict(self, state: dict) -> None:
        tensors = self._state_tensors()
        with torch.no_grad():
            for group, part in tensors.items():
                for name, values in part.items():
                    for i, t in enumerate(values):
                        saved = state[group][name][i]
                        if isinstance(t, torch.Tensor):
                            t.copy_(torch.from_numpy(np.asarray(saved)))
                        else:
                            for x, s in zip(t, saved):
                                x.copy_(torch.from_numpy(np.asarray(s)))
        self.generator.set_state(torch.from_numpy(np.asarray(state["rng"], np.uint8)))
        self.step = int(state["step"])
