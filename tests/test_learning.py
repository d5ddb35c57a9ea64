"""Learning: on the toy task each algorithm must beat its untrained policy and a stated threshold.

Thresholds are about half of what was measured on this machine (2-core CPU), and far above the
untrained policy, so a test fails if its algorithm stops learning, not on an unlucky seed.

- BC (debug preset, lr 1e-3) from pixels on `toy/reach`: 50 noisy demonstrations (success
  1.0, return ~34), 5000 gradient steps (~100 s). Measured with jaxrl2's unit-std head (issue
  23): untrained 0.05, trained 0.85 over 20 evaluation episodes; with the learned-std
  tanh-Gaussian head before it, untrained 0.0, trained 0.40. Threshold 0.2. Its PyTorch twin
  `bc-torch`, the same schedule (issue 25): untrained 0.05, trained 0.9; the same threshold.
- MOTO (debug preset; batch 16 x 16, actor and critic 2 x 64 units, lr 1e-3) offline on
  `toy/reach-state`, 10000 gradient steps (~115 s). The numbers in this docstring for MOTO,
  DreamerV2, LOMPO and COMBO were measured before their world model standardized state
  vectors and MOTO's BC term became a squared error (issue 23); all four tests passed again
  after it (~80-145 s each on one core). Measured, with the datasets of per-episode
  reset seeding (docs/decisions.md): untrained 0.05; 0.05 / 0.2 / 0.25 / 0.7 / 0.8 / 0.95 after
  2000 / 4000 / 6000 / 8000 / 10000 / 12000 steps in a run that evaluated along the way; the
  test's own run 0.35 after 6000 and 0.85 after 10000. On the earlier datasets it had
  reached 1.0 after 6000, the schedule this test used then. Threshold 0.5. From pixels MOTO
  needs a bigger model and more updates than a CPU test can afford (docs/benchmarks.md has the
  GPU measurements).
- DreamerV2 (debug preset; batch 16 x 16, actor and critic 2 x 64 units, lr 3e-4, horizon 15)
  on `toy/reach-state`: 1000 offline steps, then 60 online episodes with 50 updates each
  (~2.5 min). Offline it exploits its model (imagined value ~50, real success 0.0, as the
  paper reports for offline DreamerV2); online it recovers. Measured: untrained 0.05, 0.0
  after the offline phase, 0.2 after 40 episodes, 0.9 after 50, 0.85 after 60, 1.0 after 70.
  Threshold 0.5. With standardized states (issue 23), on 2 cores: 0.45 after 60 episodes,
  0.8 after 80, 1.0 after 100 (separate runs, untrained 0.0 each); this test now runs 80.
- SAC (debug preset, lr 1e-3) on `toy/reach-state`: 1000 offline steps, then 40 online episodes
  with 50 updates each (~25 s). Measured: untrained 0.0, 0.2 after the offline phase, 1.0
  after 10, 20, 30 and 40 episodes. Threshold 0.5. Its PyTorch twin `sac-torch`, the same
  schedule (issue 25): untrained 0.0, trained 1.0; the same threshold. From pixels (`toy/reach`) it learns, but
  too slowly and noisily for a CPU test: with 1000 offline steps and 100 online episodes of
  50 updates (~180 s), one run went 0.1 untrained, 0.0-0.1 through 50 episodes, then 0.2,
  0.1, 0.4, 0.35, 0.55 at 60-100; the same schedule in this file's `train` (which evaluates
  only at the end, so its random streams differ) ended at 0.15.
- CQL (debug preset, lr 1e-3) offline from pixels on `toy/reach`, 3000 gradient steps
  (~125-150 s). Measured: untrained 0.15; this test's schedule 0.85. A run that also
  evaluated along the way (so its random streams differ): 0.15 after 1000 steps, 0.8 after
  2000, 0.75 after 3000, with `q_random` ~3 below `q` (the penalty at work). Threshold 0.4.
  On `toy/reach-state` it reaches 1.0 after 1000 steps.
- IQL (debug preset, lr 1e-3) offline from pixels on `toy/reach`, 3000 gradient steps
  (~150 s). Measured: untrained 0.15; this test's schedule 0.85 (0.45 when stopped at 2000
  steps). A run that also evaluated along the way: 0.6, 0.9, 0.8, 0.85, 0.95 after 1000 to
  5000 steps. Threshold 0.4. It beats BC's 0.40 after 5000 steps: its unit-variance Gaussian
  makes the actor loss a weighted squared error, which fits these demonstrations faster than
  BC's tanh-Gaussian likelihood.
- LOMPO (debug preset; model batch 16 x 16, actor and critic 64 units, lr 1e-3, 128 + 128
  transitions per agent batch, 64 rollout starts) offline on `toy/reach-state`, 12000 gradient
  steps (~65 s). With LOMPO's schedule (issue 23: the buffers refreshed every 200 updates)
  measured: untrained 0.0; this test's schedule 0.6. Threshold 0.3. Before it (rows written at
  every update) the same schedule reached 1.0, and a run that evaluated along the way went
  0.0, 0.1, 0.05, 0.3, 0.25, 0.15 after 1000-6000 steps: the penalized reward keeps it near
  the data for a long while, then it learns fast.
- COMBO (the same settings) offline on `toy/reach-state`, 4000 gradient steps (~60 s). With
  LOMPO's schedule measured: untrained 0.0; this test's schedule 0.85 (0.75 before it). A run
  that evaluated along the way, before it: 0.0, 0.6, 0.75, 0.7, 0.9, 0.95, 1.0, 1.0 after
  1000-8000 steps. Threshold 0.35.
"""

import numpy as np
import pytest

from algorithms.base import get, make_config
from harness.data.collect import load_dataset, rollout
from harness.envs import make_env
from harness.replay import EpisodeReplay
from harness.evaluation import AgentPolicy, LockstepEvaluation, summary

BC_THRESHOLD = 0.2
MOTO_THRESHOLD = 0.5
MOTO_DOOR_OPEN_THRESHOLD = 0.2
DREAMER_THRESHOLD = 0.5
SAC_THRESHOLD = 0.5
CQL_THRESHOLD = 0.4
IQL_THRESHOLD = 0.4
LOMPO_THRESHOLD = 0.3
COMBO_THRESHOLD = 0.35
LATENT_AGENT = {"batch_size": 16, "sequence_length": 16, "units": 64, "layers": 2}
LATENT_BUFFER_AGENT = {"batch_size": 16, "sequence_length": 16, "actor_units": 64, "critic_units": 64,
                       "actor_lr": 1e-3, "critic_lr": 1e-3, "agent_batch_size": 128,
                       "rollout_starts": 64}


def train(task, algorithm, overrides, data_dir, offline_updates, online_episodes=0,
          updates_per_episode=0):
    """Offline updates on 50 demonstrations, then online episodes; (untrained, trained) success."""
    env, evaluate = make_env(task, 0), LockstepEvaluation(task, 100_000, 20)
    dataset, _ = load_dataset(task, 50, data_dir, env.settings())
    cls = get(algorithm)
    agent = cls(env.observation_space, env.action_space, make_config(cls, "debug", overrides),
                seed=0, total_updates=offline_updates + online_episodes * updates_per_episode)
    untrained = summary(evaluate(agent, 0))["eval_success"]
    space = env.observation_space
    replay = EpisodeReplay(space.shape, space.dtype, env.action_space.shape[0])
    for episode in dataset:
        replay.add_episode(episode, offline=True)
    rng = np.random.default_rng(0)
    k = agent.batch_spec.steps_per_call
    for _ in range(offline_updates // k):
        agent.update(replay.sample(rng, agent.batch_spec, k))
    for _ in range(online_episodes):
        replay.add_episode(rollout(env, AgentPolicy(agent, explore=True)))
        for _ in range(updates_per_episode // k):
            agent.update(replay.sample(rng, agent.batch_spec, k))
    return untrained, summary(evaluate(agent, 20))["eval_success"]


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["bc", "bc-torch"])
def test_bc_learns_toy_reach_from_pixels(data_dir, algorithm):
    untrained, trained = train("toy/reach", algorithm, {"lr": 1e-3}, data_dir, 5000)
    assert trained >= BC_THRESHOLD and trained > untrained, (untrained, trained)


def train_on_door_open_states(algorithm, data_dir, updates):
    """`cpu` preset, offline on `metaworld-state/door-open`'s 10 scripted demonstrations, in
    calls of 10 updates; (untrained, trained) success over 10 evaluation episodes."""
    task = "metaworld-state/door-open"
    env, evaluate = make_env(task, 0), LockstepEvaluation(task, 100_000, 10)
    dataset, _ = load_dataset(task, 10, data_dir, env.settings())
    cls = get(algorithm)
    agent = cls(env.observation_space, env.action_space,
                make_config(cls, "cpu", {"steps_per_call": 10}), seed=0, total_updates=updates)
    replay = EpisodeReplay(env.observation_space.shape, env.observation_space.dtype, 4)
    for episode in dataset:
        replay.add_episode(episode, offline=True)
    untrained = summary(evaluate(agent, 0))["eval_success"]
    rng = np.random.default_rng(0)
    for _ in range(updates // 10):
        agent.update(replay.sample(rng, agent.batch_spec, 10))
    return untrained, summary(evaluate(agent, 10))["eval_success"]


@pytest.mark.slow
def test_bc_learns_a_metaworld_task_from_states(data_dir):
    """BC (`cpu` preset: the paper's sizes) offline on `metaworld-state/door-open`: 10 scripted
    demonstrations, 1000 gradient steps (~10 s). Measured with a one-off script, seeds 0, 1,
    2: 0.8, 1.0, 1.0 of 10 evaluation episodes; with the learned-std tanh-Gaussian head BC had
    before issue 23, 0.0, 0.0, 0.0. Threshold 0.5."""
    untrained, trained = train_on_door_open_states("bc", data_dir, 1000)
    assert trained >= 0.5 and trained > untrained, (untrained, trained)


@pytest.mark.slow
def test_moto_learns_a_metaworld_task_from_states(data_dir):
    """MOTO (`cpu` preset) offline on `metaworld-state/door-open`: 10 scripted demonstrations,
    2000 gradient steps (~95 s). Measured (issue 23): untrained 0.0, trained 0.4 over 10
    evaluation episodes. Before the world model standardized state vectors and MOTO's BC term
    became a squared error (docs/decisions.md) it stayed at 0.0 after 2000 or 4000 updates;
    one-off runs of the same schedule gave 1.0 (seed 0, states standardized outside the
    agent) and 0.6 (seed 1). Threshold 0.2."""
    untrained, trained = train_on_door_open_states("moto", data_dir, 2000)
    assert trained >= MOTO_DOOR_OPEN_THRESHOLD and trained > untrained, (untrained, trained)


@pytest.mark.slow
def test_moto_learns_toy_reach_offline(data_dir):
    overrides = {**LATENT_AGENT, "actor_lr": 1e-3, "critic_lr": 1e-3}
    untrained, trained = train("toy/reach-state", "moto", overrides, data_dir, 10000)
    assert trained >= MOTO_THRESHOLD and trained > untrained, (untrained, trained)


@pytest.mark.slow
def test_dreamerv2_learns_toy_reach_online(data_dir):
    overrides = {**LATENT_AGENT, "actor_lr": 3e-4, "critic_lr": 3e-4, "horizon": 15}
    untrained, trained = train("toy/reach-state", "dreamerv2", overrides, data_dir, 1000,
                               online_episodes=80, updates_per_episode=50)
    assert trained >= DREAMER_THRESHOLD and trained > untrained, (untrained, trained)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["sac", "sac-torch"])
def test_sac_learns_toy_reach_online(data_dir, algorithm):
    untrained, trained = train("toy/reach-state", algorithm, {"lr": 1e-3}, data_dir, 1000,
                               online_episodes=40, updates_per_episode=50)
    assert trained >= SAC_THRESHOLD and trained > untrained, (untrained, trained)


@pytest.mark.slow
def test_cql_learns_toy_reach_offline_from_pixels(data_dir):
    untrained, trained = train("toy/reach", "cql", {"lr": 1e-3}, data_dir, 3000)
    assert trained >= CQL_THRESHOLD and trained > untrained, (untrained, trained)


@pytest.mark.slow
def test_iql_learns_toy_reach_offline_from_pixels(data_dir):
    untrained, trained = train("toy/reach", "iql", {"lr": 1e-3}, data_dir, 3000)
    assert trained >= IQL_THRESHOLD and trained > untrained, (untrained, trained)



@pytest.mark.slow
def test_lompo_learns_toy_reach_offline(data_dir):
    untrained, trained = train("toy/reach-state", "lompo", LATENT_BUFFER_AGENT, data_dir, 12000)
    assert trained >= LOMPO_THRESHOLD and trained > untrained, (untrained, trained)


@pytest.mark.slow
def test_combo_learns_toy_reach_offline(data_dir):
    untrained, trained = train("toy/reach-state", "combo", LATENT_BUFFER_AGENT, data_dir, 4000)
    assert trained >= COMBO_THRESHOLD and trained > untrained, (untrained, trained)
