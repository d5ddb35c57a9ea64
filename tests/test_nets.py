"""Known answers for the shared network helpers, against NumPy written here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import nets


def test_tanh_gaussian_log_prob_matches_numpy():
    rng = np.random.default_rng(0)
    mean, log_std = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) * 0.3
    action = np.tanh(rng.normal(size=(5, 3)))
    std = np.exp(log_std)
    u = np.arctanh(action)
    expected = (-0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
                - np.log(1 - action**2)).sum(-1)
    got = nets.tanh_gaussian_log_prob(jnp.asarray(mean), jnp.asarray(log_std), jnp.asarray(action))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)


def test_sample_and_log_prob_agree_with_the_density_and_stay_finite_when_saturated():
    key = jax.random.PRNGKey(0)
    mean, log_std = jnp.array([[0.3, -0.5]]), jnp.array([[-0.2, 0.1]])
    action, log_prob = nets.tanh_gaussian_sample_and_log_prob(key, mean, log_std)
    np.testing.assert_allclose(log_prob, nets.tanh_gaussian_log_prob(mean, log_std, action), rtol=1e-4)
    # Mean 20, std e^-10: tanh rounds to 1.0 and atanh would need clipping; the exact log-density
    # of the pre-tanh sample is log N(noise) + 10 - log(1 - tanh(u)^2) ~ 2u - 2 log 2.
    action, log_prob = nets.tanh_gaussian_sample_and_log_prob(key, jnp.full((1, 1), 20.0),
                                                              jnp.full((1, 1), -10.0))
    noise = float(jax.random.normal(key, (1, 1))[0, 0])
    expected = -0.5 * noise**2 + 10.0 - 0.5 * np.log(2 * np.pi) + 2 * 20.0 - 2 * np.log(2.0)
    assert float(action[0, 0]) == 1.0
    assert float(log_prob[0]) == np.float32(expected) or abs(float(log_prob[0]) - expected) < 1e-3


def test_random_shift_is_a_crop_of_the_edge_padded_image():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (6, 8, 8, 2), dtype=np.uint8)
    key = jax.random.PRNGKey(3)
    out = np.asarray(nets.random_shift(key, jnp.asarray(images), pad=2))
    offsets = np.asarray(jax.random.randint(key, (6, 2), 0, 5))
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    for i, (dy, dx) in enumerate(offsets):
        np.testing.assert_array_equal(out[i], padded[i, dy:dy + 8, dx:dx + 8])
    assert len({tuple(o) for o in offsets}) > 1
    np.testing.assert_array_equal(np.asarray(nets.random_shift(key, jnp.asarray(images), 0)), images)


def test_stack_frames_concatenates_frames_along_channels_oldest_first():
    obs = np.arange(2 * 3 * 4 * 4 * 2).reshape(2, 3, 4, 4, 2)
    stacked = np.asarray(nets.stack_frames(jnp.asarray(obs)))
    assert stacked.shape == (2, 4, 4, 6)
    np.testing.assert_array_equal(stacked[..., 0:2], obs[:, 0])
    np.testing.assert_array_equal(stacked[..., 4:6], obs[:, 2])
    assert nets.stack_frames(jnp.zeros((2, 3, 5))).shape == (2, 15)


def test_scan_updates_equals_a_python_loop():
    def step(carry, x):
        return carry * 0.5 + x, carry

    xs = jnp.arange(6.0)
    carry, outs = nets.scan_updates(step, jnp.float32(1.0), xs)
    expected_carry, expected_outs = 1.0, []
    for x in np.arange(6.0):
        expected_outs.append(expected_carry)
        expected_carry = expected_carry * 0.5 + x
    np.testing.assert_allclose(float(carry), expected_carry)
    np.testing.assert_allclose(np.asarray(outs), expected_outs)


def test_the_pytorch_random_shift_is_an_edge_padded_crop():
    torch = pytest.importorskip("torch")
    from algorithms import torch_nets

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (6, 5, 12, 10), dtype=np.uint8))
    shifted = torch_nets.random_shift(images, 3, torch.Generator().manual_seed(1))
    offsets = torch.randint(0, 7, (6, 2), generator=torch.Generator().manual_seed(1)).numpy()
    padded = np.pad(images.numpy(), ((0, 0), (0, 0), (3, 3), (3, 3)), mode="edge")
    for i, (r, c) in enumerate(offsets):
        np.testing.assert_array_equal(shifted[i].numpy(), padded[i, :, r:r + 12, c:c + 10])
    assert shifted.dtype == torch.uint8
