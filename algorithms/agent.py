"""What every jitted agent shares: K gradient steps per `update` call, compiled once.

An agent subclasses `JittedAgent`, keeps all its learnable and random state in `self._train`
and `self._rng` (so `TrainStateMixin` can save and load it), names the batch arrays it reads in
`batch_keys`, and writes one gradient step:

    _one_update(train, (batch, key)) -> (train, metrics)

`update(batch)` then runs K = batch's leading axis of those steps in one jitted call
(`nets.scan_updates`), donating the old state, and returns the metrics averaged over the K
steps. The host syncs once per call, when it reads the metrics.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from algorithms import nets
from algorithms.base import TrainStateMixin


class JittedAgent(TrainStateMixin):
    batch_keys: tuple = ("obs", "action")  # the batch arrays `_one_update` reads
    trace_count: int = 0  # how many times `update` was traced (compiled); tests check it is 1

    def _one_update(self, train, inputs):
        raise NotImplementedError

    def _update_many(self, train, key, batch):
        self.trace_count += 1  # runs only while tracing
        k = batch["action"].shape[0]
        train, metrics = nets.scan_updates(self._one_update, train, (batch, jax.random.split(key, k)))
        return train, jax.tree.map(jnp.mean, metrics)

    @functools.cached_property
    def _update_jit(self):
        return jax.jit(self._update_many, donate_argnums=(0,))

    def _act_key(self, explore: bool):
        """A fresh key for an exploring `act`. A deterministic one draws nothing, so it takes
        none from the stream: evaluations leave the agent as they found it, and N episodes at
        batch N act as N at batch 1 (harness.evaluation)."""
        if not explore:
            return self._rng  # unused
        key, self._rng = jax.random.split(self._rng)
        return key

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        key, self._rng = jax.random.split(self._rng)
        self._train, metrics = self._update_jit(self._train, key, {k: batch[k] for k in self.batch_keys})
        return {k: float(v) for k, v in jax.device_get(metrics).items()}


class FrameStackAgent(JittedAgent):
    """An agent that trains on `Transitions` and acts from the stacked frames alone, with no
    recurrent state (BC, SAC, CQL, IQL). It sets `self.config` (with `shift_pad`) and
    `self.pixels`, and writes `_act(params, stacked_obs, key, explore) -> actions` on
    `self._train["params"]`."""

    def _augment(self, key, stacked):
        """DrQ's random shift for images; vectors pass through unchanged."""
        return nets.random_shift(key, stacked, self.config.shift_pad) if self.pixels else stacked

    def _act(self, params, obs, key, explore):
        raise NotImplementedError

    @functools.cached_property
    def _act_jit(self):
        return jax.jit(self._act, static_argnums=(3,))

    def initial_state(self, n: int):
        return None

    def act(self, obs: np.ndarray, state, explore: bool):
        key = self._act_key(explore)
        action = self._act_jit(self._train["params"], obs, key, bool(explore))
        return np.asarray(action), state
