"""The patch convolutions equal the library convolutions, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import conv

RNG = np.random.default_rng(0)
DIMS = ("NHWC", "HWIO", "NHWC")


def lax_conv(x, w, stride):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), "VALID", dimension_numbers=DIMS)


def lax_conv_transpose(x, w, stride):
    # lax.conv_transpose correlates with the kernel as given; ours scatters kernel[j] to
    # output s*i + j, which is the flipped kernel's correlation.
    return jax.lax.conv_transpose(x, w[::-1, ::-1], (stride, stride), "VALID", dimension_numbers=DIMS)


def loop_conv_transpose(x, w, stride):
    """out[s*i + j] += x[i] @ w[j] on both axes, as loops over the input pixels."""
    b, n, m, _ = x.shape
    k, f = w.shape[0], w.shape[3]
    out = np.zeros((b, (n - 1) * stride + k, (m - 1) * stride + k, f))
    for i in range(n):
        for j in range(m):
            out[:, stride * i:stride * i + k, stride * j:stride * j + k] += np.einsum(
                "bc,uvcf->buvf", x[:, i, j], w)
    return out


def assert_same_function(ours, reference, x, w):
    """Equal values and gradients (of a random projection), to float32 rounding: errors at most
    1e-5 of the largest magnitude (sums of up to ~2,000 products differ in their last bits)."""
    def close(got, want):
        want = np.asarray(want)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())

    close(ours(x, w), reference(x, w))
    probe = jnp.asarray(RNG.normal(size=reference(x, w).shape), jnp.float32)
    grads = jax.grad(lambda x, w: jnp.sum(jnp.sin(ours(x, w)) * probe), (0, 1))(x, w)
    expected = jax.grad(lambda x, w: jnp.sum(jnp.sin(reference(x, w)) * probe), (0, 1))(x, w)
    for got, want in zip(grads, expected):
        close(got, want)


# (input size, channels in, channels out, kernel, stride): the world model's encoder (k4 s2 on
# 64, 31, 14, 6), the D4PG encoder (k3 s2 on 64, 31, 15, 7), and stride 1.
CONVS = [(64, 3, 6, 4, 2), (31, 5, 4, 4, 2), (14, 4, 3, 4, 2), (6, 3, 5, 4, 2),
         (64, 9, 4, 3, 2), (31, 4, 3, 3, 2), (15, 3, 2, 3, 2), (7, 2, 3, 3, 2), (10, 3, 4, 3, 1)]


@pytest.mark.parametrize("size,c,f,k,stride", CONVS)
def test_conv2d_equals_lax_conv(size, c, f, k, stride):
    x = jnp.asarray(RNG.normal(size=(2, size, size, c)), jnp.float32)
    w = jnp.asarray(RNG.normal(size=(k, k, c, f)), jnp.float32)
    assert_same_function(lambda x, w: conv.conv2d(x, w, stride), lambda x, w: lax_conv(x, w, stride),
                         x, w)


# The world model's decoder: 1 -> 5 -> 13 -> 30 -> 64.
TRANSPOSES = [(1, 6, 4, 5), (5, 4, 3, 5), (13, 3, 2, 6), (30, 2, 3, 6), (4, 3, 2, 3)]


@pytest.mark.parametrize("size,c,f,k", TRANSPOSES)
def test_conv_transpose2d_equals_the_definition_and_lax(size, c, f, k):
    x = RNG.normal(size=(2, size, size, c)).astype(np.float32)
    w = RNG.normal(size=(k, k, c, f)).astype(np.float32)
    np.testing.assert_allclose(conv.conv_transpose2d(jnp.asarray(x), jnp.asarray(w), 2),
                               loop_conv_transpose(x, w, 2), atol=1e-4)
    assert_same_function(lambda x, w: conv.conv_transpose2d(x, w, 2),
                         lambda x, w: lax_conv_transpose(x, w, 2), jnp.asarray(x), jnp.asarray(w))


@pytest.mark.parametrize("patches", [True, False])
def test_layers_match_flax_conv_on_both_paths(monkeypatch, patches):
    """Same parameter names, shapes and values as nn.Conv; the accelerator path (lax) too."""
    monkeypatch.setattr(conv, "use_patches", lambda: patches)
    x = jnp.asarray(RNG.normal(size=(2, 31, 31, 5)), jnp.float32)
    ours, theirs = conv.Conv(7, 4, stride=2), nn.Conv(7, (4, 4), strides=(2, 2), padding="VALID")
    params = ours.init(jax.random.PRNGKey(0), x)
    reference = theirs.init(jax.random.PRNGKey(0), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, reference)
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias
    np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), atol=1e-4)
    y = jnp.asarray(RNG.normal(size=(2, 5, 5, 4)), jnp.float32)
    layer = conv.ConvTranspose(3, 5, stride=2)
    params = jax.tree.map(lambda p: p + 0.1, layer.init(jax.random.PRNGKey(1), y))
    w, b = params["params"]["kernel"], params["params"]["bias"]
    np.testing.assert_allclose(layer.apply(params, y), loop_conv_transpose(np.asarray(y), np.asarray(w), 2)
                               + np.asarray(b), atol=1e-4)


@pytest.mark.parametrize("patches", [True, False])
@pytest.mark.parametrize("k, stride, scale, offset", [(3, 2, 1 / 255, 0.0), (4, 2, 1 / 255, -0.5)])
def test_uint8_input_with_a_folded_affine_map(monkeypatch, patches, k, stride, scale, offset):
    """A first layer on uint8 images with input_scale/offset computes, values and gradients,
    what nn.Conv computes on the float images x * scale + offset (the D4PG encoder's x / 255,
    the world model's x / 255 - 0.5)."""
    monkeypatch.setattr(conv, "use_patches", lambda: patches)
    images = jnp.asarray(RNG.integers(0, 256, size=(3, 20, 20, 6)), jnp.uint8)
    ours = conv.Conv(5, k, stride=stride, input_scale=scale, input_offset=offset)
    theirs = nn.Conv(5, (k, k), strides=(stride, stride), padding="VALID")
    params = jax.tree.map(lambda p: p + 0.1, ours.init(jax.random.PRNGKey(0), images))
    floats = images.astype(jnp.float32) * scale + offset

    def loss(module, x):
        return lambda p: jnp.sum(jnp.sin(module.apply(p, x)))

    np.testing.assert_allclose(ours.apply(params, images), theirs.apply(params, floats), atol=1e-5)
    ours_grad, theirs_grad = jax.grad(loss(ours, images))(params), jax.grad(loss(theirs, floats))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), ours_grad, theirs_grad)
