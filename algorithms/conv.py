"""Convolutions written as patches times a kernel matrix, for XLA:CPU.

XLA:CPU runs the convolutions that autodiff generates for a convolution's gradients (reversed
kernels, dilated inputs, odd dimension orders) slowly: the world model's encoder and decoder
ran at about 7.5 GFLOP/s here, 2% of what NumPy's sgemm reaches on the same 2 cores. Written
as slices, a concatenation and one matrix multiply, a convolution's gradients are slices,
pads and matrix multiplies too, which XLA:CPU runs at full speed.

- `conv2d`: a VALID convolution. With an even kernel and stride 2 it first folds each 2×2
  block of pixels into channels (space-to-depth), which turns a k×k stride-2 convolution into
  a k/2×k/2 stride-1 one over 4× the channels: contiguous slices only.
- `conv_transpose2d`: a VALID transposed convolution with stride s, as one stride-1
  convolution with ceil(k/s)² taps and s² output phases, then depth-to-space; on a 1×1
  input, one matrix multiply.

Both take (B, H, W, C) inputs and (k, k, C, F) kernels (HWIO, as `flax.linen.Conv`), and equal
`jax.lax.conv_general_dilated` / `conv_transpose` to float rounding (tests/test_conv.py checks
values and gradients). On accelerators, where the library convolutions are fast, both use
`jax.lax` instead (`use_patches`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def use_patches() -> bool:
    """Patches on CPU; the library convolution on GPU and TPU."""
    return jax.default_backend() == "cpu"


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
    """(B, H, W, C) -> (B, H/b, W/b, b*b*C); channel index (row phase, column phase, c)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // block, block, w // block, block, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // block, w // block, block * block * c)


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
    """(B, H, W, b*b*F) -> (B, H*b, W*b, F), the inverse of `space_to_depth`."""
    b, h, w, c = x.shape
    f = c // (block * block)
    x = x.reshape(b, h, w, block, block, f).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * block, w * block, f)


def _patches(x: jax.Array, taps: int, stride: int = 1) -> jax.Array:
    """(B, H, W, C) -> (B, (H-t)//s+1, (W-t)//s+1, t*t*C): the t×t neighbourhood of each output
    pixel, ordered (row tap, column tap, c) like a (t, t, C, F) kernel reshaped to (t*t*C, F)."""
    _, h, w, _ = x.shape
    out_h, out_w = (h - taps) // stride + 1, (w - taps) // stride + 1
    return jnp.concatenate([x[:, i:i + stride * (out_h - 1) + 1:stride,
                              j:j + stride * (out_w - 1) + 1:stride]
                            for i in range(taps) for j in range(taps)], axis=-1)


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """VALID convolution (cross-correlation, as `lax.conv`).

    x (B, H, W, C), kernel (k, k, C, F) -> (B, (H-k)//s + 1, (W-k)//s + 1, F), in the kernel's
    dtype. Integer images (uint8) are gathered into patches before they are converted, which
    moves a quarter of the bytes: a `paper` batch of 256 stacked 64×64×9 frames through the
    D4PG encoder's first layer took 50 instead of 92 ms here. An even kernel
    with stride 2 (the world model's 4×4) goes through space-to-depth, which reads contiguous
    slices; other kernels (the D4PG encoder's 3×3, where padding to 4×4 would cost 16/9 of
    the work) through strided slices. Measured here, forward and backward: 4×4 stride 2 on
    800 frames 1.155 vs 1.344 s (31×31×48 -> 96); 3×3 stride 2 on 256 frames 0.113 vs 0.248 s
    (31×31×32 -> 64), against 0.327 s for `lax.conv`.
    """
    k, _, c, f = kernel.shape
    if not use_patches():
        return jax.lax.conv_general_dilated(x.astype(kernel.dtype), kernel, (stride, stride), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if stride != 2 or k % 2:
        return _patches(x, k, stride).astype(kernel.dtype) @ kernel.reshape(k * k * c, f)
    out_h, out_w = (x.shape[1] - k) // 2 + 1, (x.shape[2] - k) // 2 + 1
    taps = k // 2
    # Keep exactly the input rows and columns that the outputs read, 2*(out-1) + k of them.
    x = space_to_depth(x[:, :2 * (out_h - 1) + k, :2 * (out_w - 1) + k], 2)  # channels (p, q, c)
    # kernel[2m + p, 2l + q] is tap (m, l) of phase (p, q).
    kernel = kernel.reshape(taps, 2, taps, 2, c, f).transpose(0, 2, 1, 3, 4, 5)
    return _patches(x, taps).astype(kernel.dtype) @ kernel.reshape(taps * taps * 4 * c, f)


def conv_transpose2d(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """VALID transposed convolution: out[s*i + j] += x[i] @ kernel[j] along each spatial axis.

    x (B, n, m, C), kernel (k, k, C, F) -> (B, (n-1)*s + k, (m-1)*s + k, F); the same function
    as `flax.linen.ConvTranspose(padding="VALID")` with the kernel flipped. Output pixel
    s*a + p (phase p) sums tap t of phase p, kernel[s*t + p], over the inputs a - t: each phase
    is a stride-1 convolution of the input padded by taps - 1, then depth-to-space interleaves
    the phases. A 1×1 input (the decoder's first layer) is a dense layer: x @ kernel.
    """
    k, _, c, f = kernel.shape
    s, (b, n, m) = stride, x.shape[:3]
    if n == m == 1:
        return (x.reshape(b, c) @ kernel.transpose(2, 0, 1, 3).reshape(c, k * k * f)).reshape(b, k, k, f)
    taps = -(-k // s)
    w = jnp.pad(kernel, ((0, s * taps - k), (0, s * taps - k), (0, 0), (0, 0)))
    # kernel[s*t + p, s*u + q] is tap (t, u) of phase (p, q); a correlation walks the taps
    # backwards, hence the flip.
    w = w.reshape(taps, s, taps, s, c, f)[::-1, :, ::-1]
    w = w.transpose(0, 2, 4, 1, 3, 5).reshape(taps, taps, c, s * s * f)
    x = jnp.pad(x, ((0, 0), (taps - 1, taps - 1), (taps - 1, taps - 1), (0, 0)))
    if use_patches():
        y = _patches(x, taps) @ w.reshape(taps * taps * c, s * s * f)
    else:
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = depth_to_space(y, s)
    return y[:, :(n - 1) * s + k, :(m - 1) * s + k]


def _kernel_and_bias(module: nn.Module, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A (k, k, C, F) kernel and an (F,) bias, named and initialized as `flax.linen.Conv`'s."""
    k = module.kernel_size
    kernel = module.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], module.features))
    return kernel, module.param("bias", nn.initializers.zeros, (module.features,))


class Conv(nn.Module):
    """A VALID convolution layer with bias; the parameters of `flax.linen.Conv` (same names,
    shapes and initializers), computed by `conv2d`.

    `input_scale` and `input_offset` apply x * scale + offset to the input without computing
    it: a VALID convolution of an affine map of x is the convolution of x with the kernel times
    scale, plus offset times the kernel's sum over its taps and input channels. So a first
    layer takes uint8 images as they are (`conv2d`'s cheap integer patches) and computes the
    same function as on x / 255 (- 0.5) in float.
    """

    features: int
    kernel_size: int
    stride: int = 1
    input_scale: float = 1.0
    input_offset: float = 0.0

    @nn.compact
    def __call__(self, x):
        kernel, bias = _kernel_and_bias(self, x)
        y = conv2d(x, kernel * self.input_scale, self.stride)
        if self.input_offset:
            bias = bias + self.input_offset * kernel.sum(axis=(0, 1, 2))
        return y + bias


class ConvTranspose(nn.Module):
    """A VALID transposed convolution layer with bias (`conv_transpose2d`)."""

    features: int
    kernel_size: int
    stride: int = 2

    @nn.compact
    def __call__(self, x):
        kernel, bias = _kernel_and_bias(self, x)
        return conv_transpose2d(x, kernel, self.stride) + bias
