"""Behaviour cloning in PyTorch: `algorithms/bc.py` written for PyTorch, the same method,
config, presets and jaxrl2 settings, the example of a PyTorch algorithm behind the interface.

    pi_theta(a | s) = N(a; tanh(mu_theta(aug(s))), I)
    L(theta) = E_{(s, a) ~ D_offline} [ ||a - tanh(mu_theta(aug(s)))||^2 / 2 ] + const

Frame stack 3, D4PG encoder, MLP (256, 256), random shift (pad 4), Adam 3e-4 with a cosine
decay over all updates, batch 256, offline data only (`offline_only=True`).
"""

from __future__ import annotations

import math

import torch

from algorithms import torch_nets
from algorithms.base import Transitions, register
from algorithms.bc import Config


@register
class BCTorch(torch_nets.TorchAgent):
    name = "bc-torch"
    Config = Config

    def __init__(self, obs_space, action_space, config: Config, seed: int, total_updates: int):
        torch_nets.make_deterministic()
        self.config = config
        self.batch_spec = Transitions(config.frame_stack, config.batch_size, config.steps_per_call,
                                      offline_only=True)
        self.pixels = len(obs_space.shape) == 3
        self.generator = torch.Generator().manual_seed(seed)
        encoder = torch_nets.make_encoder(obs_space.shape, config.frame_stack, config.cnn_channels,
                                          config.embed_dim)
        head = torch_nets.mlp(config.embed_dim, config.hidden_dims, action_space.shape[0])
        self.policy = torch_nets.flax_init_(torch.nn.Sequential(encoder, head), self.generator)
        # BC decays every parameter's learning rate (as bc.py's optax.adam(cosine schedule)).
        self.param_groups = {"policy": (list(self.policy.parameters()), True)}
        self._setup(config.lr, total_updates, buffers={})

    def _mean_action(self, obs):
        return torch.tanh(self.policy(torch_nets.to_float(obs)))

    def _one_update(self, batch):
        obs = torch_nets.stack_frames(batch["obs"][:, :-1])
        if self.pixels:
            obs = torch_nets.random_shift(obs, self.config.shift_pad, self.generator)
        action = torch.from_numpy(batch["action"])
        mean = self._mean_action(obs)
        squared = ((action - mean) ** 2).sum(-1)
        loss = (0.5 * squared + 0.5 * action.shape[-1] * math.log(2.0 * math.pi)).mean()
        self.optimizers["policy"].zero_grad(set_to_none=False)
        loss.backward()
        self._optimizer_step()
        return {"bc_loss": loss, "action_mse": squared.mean() / action.shape[-1]}

    def _act(self, obs, explore):
        mean = self._mean_action(obs)
        if explore:  # a sample of N(mean, I), clipped to the action bounds
            return (mean + torch.randn(mean.shape, generator=self.generator)).clamp(-1.0, 1.0)
        return mean
