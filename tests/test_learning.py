"""Learning: on toy/reach each algorithm must beat its untrained policy and a stated threshold.

BC (debug preset, lr 1e-3): 50 noisy demonstrations (success 1.0, return ~34), 5000 gradient
steps (~100 s on 2 CPU cores). Measured on this machine: untrained success 0.0, trained 0.40
(return 12.5) over 20 evaluation episodes. Threshold 0.2: half the measured value, far above
the untrained policy's 0.0, so the test fails if BC stops learning from pixels.
"""

import numpy as np
import pytest

from algorithms.base import get, make_config
from harness.data.collect import load_dataset
from harness.envs import make_env
from harness.replay import EpisodeReplay
from harness.run import evaluate

BC_THRESHOLD = 0.2


@pytest.mark.slow
def test_bc_learns_toy_reach_from_pixels(data_dir):
    env, eval_env = make_env("toy/reach", 0), make_env("toy/reach", 100_000)
    dataset, _ = load_dataset("toy/reach", 50, data_dir, env.settings())
    cls = get("bc")
    agent = cls(env.observation_space, env.action_space,
                make_config(cls, "debug", {"lr": 1e-3}), seed=0, total_updates=5000)
    untrained = evaluate(eval_env, agent, 20)["eval_success"]
    replay = EpisodeReplay(env.observation_space.shape, np.uint8, 2)
    for episode in dataset:
        replay.add_episode(episode, offline=True)
    rng = np.random.default_rng(0)
    for _ in range(500):
        agent.update(replay.sample(rng, agent.batch_spec, 10))
    trained = evaluate(eval_env, agent, 20)["eval_success"]
    assert trained >= BC_THRESHOLD and trained > untrained, (untrained, trained)
