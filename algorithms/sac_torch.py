"""SAC (Haarnoja et al., 2018), DrQ-style from pixels, in PyTorch: `algorithms/sac.py` written
for PyTorch, the same losses, config, presets and jaxrl2 settings.

    critic:       L(phi)   = sum_j mean_B (Q_j(s, a) - y)^2 / 2,
                  y        = r + g (1 - terminal) (min_j Qbar_j(s', a') - alpha log pi(a'|s')),  a' ~ pi(.|s')
    actor:        L(theta) = mean_B ( alpha log pi(a~|s) - mean_j Q_j(s, a~) ),                 a~ ~ pi(.|s)
    temperature:  L(alpha) = alpha * mean_B ( -log pi(a~|s) - H_target )

One D4PG encoder shared by actor and critic and trained by the critic only (`share_encoder`),
random shifts of s and s', Polyak targets of encoder and critics, initial temperature 0.1,
target entropy -|A|. All losses of a step use the parameters at its start; then one Adam step
each (the actor's learning rate decays by a cosine, as jaxrl2's).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from algorithms import torch_nets
from algorithms.base import Transitions, register
from algorithms.sac import Config


class TwinQ(nn.Module):
    """Q_1, Q_2 on [features, action]: (B, E), (B, A) -> (2, B)."""

    def __init__(self, inputs: int, hidden_dims):
        super().__init__()
        self.heads = nn.ModuleList([torch_nets.mlp(inputs, hidden_dims, 1) for _ in range(2)])

    def forward(self, features, action):
        x = torch.cat([features, action], -1)
        return torch.stack([head(x)[:, 0] for head in self.heads])


class ActorHead(nn.Module):
    """MLP -> (mean, log-std clipped to [log_std_min, log_std_max])."""

    def __init__(self, inputs: int, hidden_dims, action_dim: int, log_std_min: float,
                 log_std_max: float):
        super().__init__()
        self.trunk = torch_nets.mlp(inputs, hidden_dims)
        self.mean, self.log_std = nn.Linear(hidden_dims[-1], action_dim), nn.Linear(hidden_dims[-1], action_dim)
        self.bounds = (log_std_min, log_std_max)

    def forward(self, embed):
        hidden = self.trunk(embed)
        return self.mean(hidden), self.log_std(hidden).clamp(*self.bounds)


@register
class SACTorch(torch_nets.TorchAgent):
    name = "sac-torch"
    Config = Config

    def __init__(self, obs_space, action_space, config: Config, seed: int, total_updates: int):
        torch_nets.make_deterministic()
        self.config = config
        self.action_dim = action_space.shape[0]
        self.target_entropy = config.target_entropy_per_dim * self.action_dim
        self.batch_spec = Transitions(config.frame_stack, config.batch_size, config.steps_per_call)
        self.pixels = len(obs_space.shape) == 3
        self.generator = torch.Generator().manual_seed(seed)

        def encoder():
            module = torch_nets.make_encoder(obs_space.shape, config.frame_stack,
                                             config.cnn_channels, config.embed_dim)
            return torch_nets.flax_init_(module, self.generator)

        hidden = tuple(config.hidden_dims)
        self.encoder = encoder()
        self.critic = torch_nets.flax_init_(TwinQ(config.embed_dim + self.action_dim, hidden), self.generator)
        self.actor = torch_nets.flax_init_(ActorHead(config.embed_dim, hidden, self.action_dim,
                                                     config.log_std_min, config.log_std_max), self.generator)
        self.actor_encoder = None if config.share_encoder else encoder()
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.init_temperature)))
        self.target_encoder, self.target_critic = copy.deepcopy(self.encoder), copy.deepcopy(self.critic)
        self.critic_params = list(self.encoder.parameters()) + list(self.critic.parameters())
        self.policy_params = list(self.actor.parameters()) + (
            [] if self.actor_encoder is None else list(self.actor_encoder.parameters()))
        self.target_params = list(self.target_encoder.parameters()) + list(self.target_critic.parameters())
        for p in self.target_params:
            p.requires_grad_(False)
        self.param_groups = {"actor": (self.policy_params, True),
                             "rest": (self.critic_params + [self.log_temperature], False)}
        self._setup(config.lr, total_updates, buffers={"target": self.target_params})

    def _actor_embed(self, obs, critic_embed=None):
        """The actor's features: the critic's, gradient stopped (`share_encoder`), or its own."""
        if self.actor_encoder is not None:
            return self.actor_encoder(obs)
        return (self.encoder(obs) if critic_embed is None else critic_embed).detach()

    def _policy_sample(self, embed):
        mean, log_std = self.actor(embed)
        return torch_nets.tanh_gaussian_sample_and_log_prob(mean, log_std, self.generator)

    def _augmented(self, frames):
        x = torch_nets.stack_frames(frames)
        if self.pixels:
            x = torch_nets.random_shift(x, self.config.shift_pad, self.generator)
        return torch_nets.to_float(x)

    def _one_update(self, batch):
        c = self.config
        obs, next_obs = self._augmented(batch["obs"][:, :-1]), self._augmented(batch["obs"][:, 1:])
        action = torch.from_numpy(batch["action"])
        reward, terminal = torch.from_numpy(batch["reward"]), torch.from_numpy(batch["terminal"])
        temperature = self.log_temperature.exp()

        with torch.no_grad():  # the soft Bellman target y: a' from the current actor
            next_action, next_log_prob = self._policy_sample(self._actor_embed(next_obs))
            next_q = self.target_critic(self.target_encoder(next_obs), next_action).min(0).values
            if c.backup_entropy:
                next_q = next_q - temperature * next_log_prob
            target_q = reward + c.discount * (1.0 - terminal) * next_q

        embed = self.encoder(obs)
        q = self.critic(embed, action)
        critic_loss = 0.5 * ((q - target_q) ** 2).mean(-1).sum()

        sampled, log_prob = self._policy_sample(self._actor_embed(obs, embed))
        # The mean of the twin Qs with the critic fixed (its gradients are not taken here).
        q_mean = self.critic(embed.detach(), sampled).mean(0)
        actor_loss = (temperature.detach() * log_prob - q_mean).mean()
        entropy = -log_prob.detach()
        temperature_loss = temperature * (entropy - self.target_entropy).mean()

        grads = torch.autograd.grad(critic_loss, self.critic_params)
        grads += torch.autograd.grad(actor_loss + temperature_loss,
                                     self.policy_params + [self.log_temperature])
        for param, grad in zip(self.critic_params + self.policy_params + [self.log_temperature], grads):
            param.grad = grad
        self._optimizer_step()
        with torch.no_grad():
            torch._foreach_lerp_(self.target_params, self.critic_params, c.tau)
        return {"critic_loss": critic_loss, "q": q.mean(), "actor_loss": actor_loss,
                "temperature": temperature, "entropy": entropy.mean(),
                "temperature_loss": temperature_loss}

    def _act(self, obs, explore):
        mean, log_std = self.actor(self._actor_embed(torch_nets.to_float(obs)))
        if explore:
            return torch.tanh(mean + log_std.exp() * torch.randn(mean.shape, generator=self.generator))
        return torch.tanh(mean)
