"""Episode replay: every step stored once, in flat uint8 arrays, offline and online together.

Entries follow the episode format (`harness.data.format`): entry t holds the observation, the
action that led to it, and the reward received on arriving. Storage grows by doubling, so
adding an episode is amortized O(its length). Samples are gathered with one fancy index per key:

- `sample_transitions(K, B, S)`: a transition at entry t (not an episode's last entry) gives
  `obs` frames t-S+1 .. t+1 (indices below the episode's first entry repeat that entry), so
  `obs[..., :S, ...]` is the stacked observation and `obs[..., 1:, ...]` the stacked next one;
  `action`, `reward`, `terminal` come from entry t+1.
- `sample_sequences(K, B, L)`: L consecutive entries of one episode.

Episodes are marked offline (the dataset) or online; `offline_only` sampling (BC) never
touches online episodes.
"""

from __future__ import annotations

import numpy as np

from harness.data.format import episode_success


class EpisodeReplay:
    def __init__(self, obs_shape: tuple, obs_dtype, action_dim: int, capacity: int = 1024,
                 bc_targets: int | None = None):
        self._bc_targets = bc_targets  # see harness.data.format.episode_success
        self._obs = np.zeros((capacity, *obs_shape), obs_dtype)
        self._action = np.zeros((capacity, action_dim), np.float32)
        self._reward = np.zeros(capacity, np.float32)
        self._is_first = np.zeros(capacity, bool)
        self._is_terminal = np.zeros(capacity, bool)
        self._episode_success = np.zeros(capacity, np.float32)
        self._episode_start = np.zeros(capacity, np.int64)  # first entry of each entry's episode
        self._size = 0
        self._episodes: list[tuple[int, int, bool]] = []  # (first entry, entries, offline?)
        self._index_cache: dict = {}

    @property
    def num_entries(self) -> int:
        return self._size

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name)[: self._size].nbytes for name in self._ARRAYS)

    @property
    def allocated_bytes(self) -> int:
        """What the arrays hold room for (capacity doubles as episodes come)."""
        return sum(getattr(self, name).nbytes for name in self._ARRAYS)

    _ARRAYS = ("_obs", "_action", "_reward", "_is_first", "_is_terminal", "_episode_success",
               "_episode_start")

    def _grow(self, needed: int) -> None:
        capacity = len(self._reward)
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        for name in self._ARRAYS:
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), old.dtype)
            new[: self._size] = old[: self._size]
            setattr(self, name, new)

    def add_episode(self, episode: dict, offline: bool = False) -> None:
        n = len(episode["obs"])
        start, end = self._size, self._size + n
        self._grow(end)
        self._obs[start:end] = episode["obs"]
        self._action[start:end] = episode["action"]
        self._reward[start:end] = episode["reward"]
        self._is_first[start:end] = episode["is_first"]
        self._is_terminal[start:end] = episode["is_terminal"]
        self._episode_success[start:end] = float(episode_success(episode, self._bc_targets))
        self._episode_start[start:end] = start
        self._size = end
        self._episodes.append((start, n, offline))
        self._index_cache.clear()

    def _valid_starts(self, span: int, offline_only: bool) -> np.ndarray:
        """Entries t such that t .. t+span-1 lie in one (offline, if asked) episode."""
        key = (span, offline_only)
        if key not in self._index_cache:
            parts = [np.arange(s, s + n - span + 1) for s, n, offline in self._episodes
                     if n >= span and (offline or not offline_only)]
            self._index_cache[key] = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return self._index_cache[key]

    def _pick(self, rng: np.random.Generator, span: int, count: int,
              offline_only: bool) -> np.ndarray:
        valid = self._valid_starts(span, offline_only)
        if len(valid) == 0:
            raise ValueError(f"replay holds no episode with {span} entries to sample from")
        return valid[rng.integers(0, len(valid), count)]

    def sample_transitions(self, rng: np.random.Generator, k: int, batch: int,
                           frame_stack: int, offline_only: bool = False) -> dict[str, np.ndarray]:
        t = self._pick(rng, 2, k * batch, offline_only)  # (K*B,)
        offsets = np.arange(-frame_stack + 1, 2)  # (S+1,)
        frames = np.maximum(t[:, None] + offsets, self._episode_start[t][:, None])  # (K*B, S+1)
        nxt = t + 1
        out = {"obs": self._obs[frames], "action": self._action[nxt], "reward": self._reward[nxt],
               "terminal": self._is_terminal[nxt].astype(np.float32),
               "episode_success": self._episode_success[t]}
        return {key: v.reshape(k, batch, *v.shape[1:]) for key, v in out.items()}

    def sample_sequences(self, rng: np.random.Generator, k: int, batch: int,
                         length: int, offline_only: bool = False) -> dict[str, np.ndarray]:
        idx = self._pick(rng, length, k * batch, offline_only)[:, None] + np.arange(length)  # (K*B, L)
        out = {"obs": self._obs[idx], "action": self._action[idx], "reward": self._reward[idx],
               "is_first": self._is_first[idx].astype(np.float32),
               "is_terminal": self._is_terminal[idx].astype(np.float32),
               "episode_success": self._episode_success[idx]}
        return {key: v.reshape(k, batch, *v.shape[1:]) for key, v in out.items()}

    def sample(self, rng: np.random.Generator, spec, k: int) -> dict[str, np.ndarray]:
        """A batch for an algorithm's `batch_spec` (Transitions or Sequences), K steps deep."""
        if hasattr(spec, "frame_stack"):
            return self.sample_transitions(rng, k, spec.batch_size, spec.frame_stack,
                                           spec.offline_only)
        return self.sample_sequences(rng, k, spec.batch_size, spec.length, spec.offline_only)
