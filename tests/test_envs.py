"""Task environments: shapes, seeding, episode accounting, and the protocol's settings."""

import importlib.util
import sys

import gymnasium as gym
import numpy as np
import pytest

from harness.envs import make_env, task_info


def first_frames(task, seed, steps=3):
    env = make_env(task, seed)
    try:
        frames = []
        for _ in range(2):  # two episodes: the second must come from the same seeded stream
            obs, _ = env.reset()
            frames.append(obs)
            for _ in range(steps):
                obs, *_ = env.step(np.full(env.action_space.shape, 0.5, np.float32))
            frames.append(obs)
        return np.stack(frames)
    finally:
        env.close()


@pytest.mark.parametrize("task", ["metaworld/door-open", "metaworld-state/door-open", "toy/reach"])
def test_same_seed_same_episodes_other_seed_other_episodes(task):
    a, b, c = first_frames(task, 0), first_frames(task, 0), first_frames(task, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[2])  # a fresh randomization at every reset


def test_metaworld_wrapper_follows_the_protocol():
    env = make_env("metaworld/door-open", 0)
    try:
        settings = env.settings()
        assert settings["camera"] == {"distance": 0.75, "azimuth": 15.0, "elevation": -22.5,
                                      "lookat": (-0.15, 0.65, 0.25)}
        assert settings["action_repeat"] == 2 and settings["episode_steps"] == 200
        assert settings["noop_steps"] == 10 and settings["hand_noise_std"] == 0.02
        assert settings["renderer"]["msaa_samples"] == 0 and not settings["renderer"]["shadows"]
        obs, info = env.reset()
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and obs.std() > 5
        assert env.action_space.shape == (4,)
        steps, successes, truncated = 0, [], False
        while not truncated:
            obs, reward, terminated, truncated, info = env.step(env.scripted_action())
            assert not terminated  # no termination at success
            assert reward == float(info["success"])  # sparse success reward
            successes.append(info["success"])
            steps += 1
        assert steps == 200 and any(successes)
    finally:
        env.close()


def test_metaworld_state_is_the_same_task_seen_as_the_state_vector():
    """Same seed, same episodes and demonstrations as from pixels; the observation is the
    39-d float32 state with the goal shown (its last three entries)."""
    pixels, state = make_env("metaworld/drawer-open", 4), make_env("metaworld-state/drawer-open", 4)
    try:
        assert state.observation_space.shape == (39,) and not task_info("metaworld-state/drawer-open").pixels
        settings = state.settings()
        assert settings["renderer"] is None and "camera" not in settings
        common = {k: v for k, v in pixels.settings().items() if k not in ("image_size", "camera", "renderer", "task")}
        assert {k: settings[k] for k in common} == common
        for _ in range(2):  # two episodes: positions freshly randomized at each reset
            image, _ = pixels.reset()
            vector, _ = state.reset()
            assert image.shape == (64, 64, 3) and vector.dtype == np.float32
            np.testing.assert_allclose(vector[-3:], state._sim._target_pos, atol=1e-6)
            assert np.abs(vector[-3:]).sum() > 0  # not partially observable
            successes = []
            for _ in range(200):
                action = pixels.scripted_action()
                np.testing.assert_array_equal(action, state.scripted_action())
                _, r1, term1, trunc1, _ = pixels.step(action)
                vector, r2, term2, trunc2, _ = state.step(action)
                assert (r1, term1, trunc1) == (r2, term2, trunc2) and not term2
                successes.append(r2)
            assert trunc2 and any(successes)
    finally:
        pixels.close()
        state.close()


def test_task_info_counts_simulator_steps():
    assert task_info("metaworld/door-open").episode_sim_steps == 400
    assert task_info("toy/reach").episode_sim_steps == 50
    assert task_info("gym/Pendulum-v1").episode_sim_steps == 200


def test_gym_actions_are_rescaled_to_the_env_bounds():
    env = make_env("gym/Pendulum-v1", 0)
    obs, _ = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (3,)
    env.step(np.array([1.0], np.float32))
    assert env._env.unwrapped.last_u == pytest.approx(2.0)  # Pendulum's torque bound
    env.close()


def test_toy_reach_demonstrator_succeeds_and_random_rarely_does():
    from harness.data.collect import rollout

    env = make_env("toy/reach", 5)
    demo = [rollout(env, lambda o, f: env.scripted_action())["success"].any() for _ in range(20)]
    rng = np.random.default_rng(0)
    rand = [rollout(env, lambda o, f: rng.uniform(-1, 1, 2))["success"].any() for _ in range(20)]
    assert np.mean(demo) >= 0.9 and np.mean(rand) <= 0.3


@pytest.fixture
def gl(monkeypatch):
    """ensure_backend() as on a fresh process: no backend chosen yet, mujoco not imported,
    the environment restored afterwards; `probes` maps a backend to what `_probe` returns."""
    from harness.envs import render

    for name in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "HARNESS_GL_RENDERER", "HARNESS_GL_VENDOR",
                 render.ALLOW_SOFTWARE_ENV):
        monkeypatch.setenv(name, "x")  # so that monkeypatch restores what ensure_backend sets
        monkeypatch.delenv(name)
    monkeypatch.delitem(sys.modules, "mujoco", raising=False)
    probes = {}
    monkeypatch.setattr(render, "_probe", lambda backend: probes.get(backend, "exit 1: no such backend"))
    monkeypatch.setattr(render, "nvidia_gpu_present", lambda: probes.get("nvidia", False))
    return render, probes


MESA = ("Mesa/X.org", "llvmpipe (LLVM 15.0.6, 256 bits)")
NVIDIA = ("NVIDIA Corporation", "NVIDIA H100 80GB HBM3/PCIe/SSE2")


def test_a_missing_gl_backend_names_the_packages_to_install(gl, monkeypatch):
    from harness.errors import UserError

    render, _ = gl
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    with pytest.raises(UserError, match="MUJOCO_GL=osmesa: exit 1: no such backend.*apt-get "
                                        "install libosmesa6"):
        render.ensure_backend()


def test_the_chosen_renderer_and_its_vendor_are_recorded(gl):
    render, probes = gl
    probes["egl"] = NVIDIA
    probes["nvidia"] = True
    assert render.ensure_backend() == {"backend": "egl", "gl_vendor": NVIDIA[0],
                                       "gl_renderer": NVIDIA[1]}
    assert render.renderer_info()["gl_vendor"] == NVIDIA[0]  # what runs and manifests record
    from harness.data.store import comparable

    assert "gl_vendor" not in comparable({"renderer": render.renderer_info()})["renderer"]


def test_without_a_gpu_a_failed_egl_falls_back_to_osmesa_and_says_so(gl, capsys):
    render, probes = gl
    probes["osmesa"] = ("Mesa/X.org", "llvmpipe (LLVM 15.0.6, 256 bits)")
    assert render.ensure_backend()["backend"] == "osmesa"
    assert "rendering with MUJOCO_GL=osmesa" in capsys.readouterr().err


@pytest.mark.parametrize("egl", [MESA, "rendering one frame did not finish within 60 s (hung)"])
def test_on_an_nvidia_machine_a_software_renderer_stops_the_run(gl, monkeypatch, egl):
    """EGL that lands on Mesa's llvmpipe, or EGL that fails with OSMesa left: both would render
    in software, 30x slower, on a machine with a GPU; unless the user asks for it."""
    from harness.errors import UserError

    render, probes = gl
    probes.update(egl=egl, osmesa=MESA, nvidia=True)
    with pytest.raises(UserError, match="has an NVIDIA GPU, but MuJoCo would render with the "
                                        "software renderer 'llvmpipe.*10_nvidia.json"):
        render.ensure_backend()
    monkeypatch.setenv(render.ALLOW_SOFTWARE_ENV, "1")
    assert render.ensure_backend()["gl_renderer"] == MESA[1]


def test_an_explicit_software_backend_is_respected_on_an_nvidia_machine(gl, monkeypatch):
    render, probes = gl
    probes.update(osmesa=MESA, nvidia=True)
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert render.ensure_backend()["backend"] == "osmesa"


def test_the_backend_probe_really_renders():
    from harness.envs import render

    results = [render._probe("egl"), render._probe("osmesa")]
    assert any(isinstance(r, tuple) and r[0] and r[1] for r in results), results
    assert isinstance(render._probe("no-such-backend"), str)


def test_toy_reach_state_is_the_same_task_seen_as_positions():
    pixels, state = make_env("toy/reach", 3), make_env("toy/reach-state", 3)
    image, _ = pixels.reset()
    vector, _ = state.reset()
    assert state.observation_space.shape == (4,) and vector.dtype == np.float32
    assert not task_info("toy/reach-state").pixels
    for _ in range(5):
        action = pixels.scripted_action()
        np.testing.assert_array_equal(action, state.scripted_action())
        image, r1, *_ = pixels.step(action)
        vector, r2, *_ = state.step(action)
        assert r1 == r2
    # The red agent dot is drawn where the state vector says the agent is.
    rows, cols = np.nonzero((image[..., 0] == 230) & (image[..., 1] == 40))
    centre = np.array([(cols.mean() + 0.5) / 32 - 1, 1 - (rows.mean() + 0.5) / 32])
    np.testing.assert_allclose(centre, vector[:2], atol=0.05)


@pytest.mark.parametrize("task", ["toy/reach", "toy/reach-state", "metaworld/door-open",
                                  "metaworld-state/drawer-open", "gym/Pendulum-v1", "kitchen/mixed"])
def test_settings_and_spaces_are_known_without_building_the_simulator(task):
    from harness.envs import env_settings, make_env, task_info

    env = make_env(task, 0)
    assert env_settings(task) == env.settings()
    info = task_info(task)
    assert info.obs_shape == env.observation_space.shape
    assert (info.action_dim,) == env.action_space.shape
    env.close()


class _GoalEnv(gym.Env):
    """A continuous-action env that observes a dict (like Gymnasium-Robotics' Fetch tasks)."""

    action_space = gym.spaces.Box(-1, 1, (2,))
    observation_space = gym.spaces.Dict({"observation": gym.spaces.Box(-1, 1, (3,))})


def test_gym_tasks_must_observe_a_state_vector():
    from harness.envs import task_info
    from harness.errors import UserError

    gym.register("MotoHarnessTestGoal-v0", entry_point=_GoalEnv, disable_env_checker=True)
    try:
        with pytest.raises(UserError, match="gym/ tasks need a state vector"):
            task_info("gym/MotoHarnessTestGoal-v0")
    finally:
        del gym.registry["MotoHarnessTestGoal-v0"]


BOX2D = importlib.util.find_spec("Box2D") is not None


@pytest.mark.parametrize("task,expected", [
    ("gym/CarRacing-v3", "gym/ tasks need a state vector" if BOX2D else
     "Gymnasium cannot make this environment (DependencyNotInstalled: Box2D"),
    ("gym/Reacher-v2", "Gymnasium cannot make this environment ("),  # mujoco-py is gone
    ("gym/CliffWalking-v0", "unknown Gymnasium id 'CliffWalking-v0'"),
    ("gym/Blackjack-v1", "discrete action space"),
    ("gym/NoSuchEnv-v9", "unknown Gymnasium id"),
])
def test_gym_ids_gymnasium_cannot_make_are_user_errors(task, expected):
    """An id whose dependencies are missing (Box2D here), that needs an old package, or that
    is deprecated is refused when the suite is checked, not by a traceback in a worker."""
    from harness.envs import task_info
    from harness.errors import UserError

    with pytest.raises(UserError) as caught:
        task_info(task)
    assert expected in str(caught.value)


RENDER_SCRIPT = """
import hashlib, sys
from harness.envs.render import FreeCameraRenderer, ensure_backend
ensure_backend()
import mujoco
model = mujoco.MjModel.from_xml_string(
    '<mujoco><worldbody><light pos="0 0 2"/><geom type="plane" size="1 1 .1"/>'
    '<body pos="0 0 .3"><freejoint/><geom type="box" size=".1 .1 .1" rgba="1 0 0 1"/></body>'
    '</worldbody></mujoco>')
data = mujoco.MjData(model)
renderers = [FreeCameraRenderer(model, 64, 1.5, 90.0 + 30 * i, -30.0, (0, 0, 0.2))
             for i in range(int(sys.argv[1]))]
digests = []
for step in range(int(sys.argv[2])):
    mujoco.mj_step(model, data)
    digests.append([hashlib.sha256(r.render(data).tobytes()).hexdigest()[:12] for r in renderers])
print(" ".join(digests[-1]))
for r in renderers:
    r.close()
"""


def render_digests(backend, renderers, steps, processes=1):
    """The last frame's digest from each renderer, in each of `processes` started together."""
    import os
    import subprocess

    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    env.pop("HARNESS_GL_RENDERER", None)
    workers = [subprocess.Popen([sys.executable, "-c", RENDER_SCRIPT, str(renderers), str(steps)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(processes)]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-500:] for _, err in outputs]
    return [out.split() for out, _ in outputs]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["egl", "osmesa"])
def test_several_renderers_in_one_process_and_several_processes_render_alike(backend):
    """What docs/cluster.md calls safe on this machine: 3 renderers in one process (each its
    own GL context, rendering in turn) give the frames that one renderer alone gives, and 4
    processes rendering at once all finish and agree (cf. google-deepmind/mujoco#3444: 8 EGL
    processes hanging on one H200)."""
    from harness.envs import render

    if isinstance(render._probe(backend), str):
        pytest.skip(f"{backend} does not render on this machine")
    alone = [render_digests(backend, 1, 100)[0][0]]
    together = render_digests(backend, 3, 100)[0]
    assert together[0] == alone[0] and len(set(together)) == 3  # 3 different cameras
    processes = render_digests(backend, 3, 100, processes=4)
    assert all(p == together for p in processes)
