"""Real MetaWorld frames next to the world model's open-loop predictions (docs/openloop.png).

Trains the world model alone on a task's scripted dataset for a few thousand updates, then
feeds it the first CONTEXT frames of held-out sequences and lets it predict the rest from
the real actions only. Usage:
    python scripts/openloop_figure.py [--task door-open] [--preset small] [--updates 3000] [--out docs/openloop.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from PIL import Image  # noqa: E402

from algorithms.base import make_config  # noqa: E402
from algorithms.world_model import WorldModel, WorldModelConfig, observe, world_model_loss  # noqa: E402
from harness.data.collect import load_dataset  # noqa: E402
from harness.data.store import default_data_dir  # noqa: E402
from harness.envs import make_env  # noqa: E402
from harness.replay import EpisodeReplay  # noqa: E402

CONTEXT, LENGTH, SHOWN = 5, 50, 10


class _Presets:
    name, Config = "world_model", WorldModelConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="door-open")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--out", default="docs/openloop.png")
    args = parser.parse_args()

    env = make_env(f"metaworld/{args.task}", 0)
    episodes, _ = load_dataset(f"metaworld/{args.task}", 10, default_data_dir(), env.settings())
    env.close()
    train, held_out = episodes[:8], episodes[8:]
    replay = EpisodeReplay((64, 64, 3), np.uint8, 4)
    for episode in train:
        replay.add_episode(episode, offline=True)

    config = make_config(_Presets, args.preset)
    model = WorldModel(config, 4)
    key = jax.random.PRNGKey(0)
    params = jax.jit(lambda k: model.init(k, jnp.zeros((1, 64, 64, 3), jnp.uint8), jnp.zeros((1, 4)),
                                          k, method=WorldModel.init_all))(key)
    optimizer = optax.chain(optax.clip_by_global_norm(config.clip),
                            optax.adamw(config.lr, eps=config.eps, weight_decay=config.weight_decay))
    opt_state = optimizer.init(params)

    @jax.jit
    def update(params, opt_state, batch, key):
        grads, (_, metrics) = jax.grad(lambda p: world_model_loss(model, p, batch, key), has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    rng = np.random.default_rng(0)
    start = time.time()
    for step in range(args.updates):
        batch = {k: v[0] for k, v in replay.sample_sequences(rng, 1, 16, LENGTH).items()
                 if k in ("obs", "action", "reward", "is_first")}
        params, opt_state, metrics = update(params, opt_state, batch, jax.random.PRNGKey(step))
        if (step + 1) % 500 == 0:
            print(f"update {step + 1}: image_mse {float(metrics['image_mse']):.5f} "
                  f"kl {float(metrics['kl']):.2f} ({time.time() - start:.0f} s)", flush=True)

    # Open loop: posterior over the context, then the prior driven by the real actions alone.
    obs = np.stack([e["obs"][20:20 + LENGTH] for e in held_out])  # (2, L, 64, 64, 3)
    action = np.stack([e["action"][20:20 + LENGTH] for e in held_out])
    is_first = np.zeros(action.shape[:2], np.float32)
    is_first[:, 0] = 1.0
    embed = model.apply(params, jnp.asarray(obs[:, :CONTEXT]), method=WorldModel.encode)
    posts, _ = observe(model, params, embed, jnp.asarray(action[:, :CONTEXT]),
                       jnp.asarray(is_first[:, :CONTEXT]), jax.random.PRNGKey(1))
    state = jax.tree.map(lambda x: x[:, -1], posts)
    predicted = []
    for t in range(CONTEXT, LENGTH):
        state = model.apply(params, state, jnp.asarray(action[:, t]), jax.random.PRNGKey(t), 0,
                            method=WorldModel.img_step)
        image = model.apply(params, WorldModel.features(state), method=WorldModel.decode)
        predicted.append(np.clip((np.asarray(image) + 0.5) * 255, 0, 255).astype(np.uint8))
    predicted = np.stack(predicted, 1)  # (2, L - CONTEXT, 64, 64, 3)
    steps = np.linspace(0, LENGTH - CONTEXT - 1, SHOWN).astype(int)
    rows = []
    for i in range(len(held_out)):
        rows.append(np.concatenate([obs[i, CONTEXT + s] for s in steps], 1))
        rows.append(np.concatenate([predicted[i, s] for s in steps], 1))
    mse = float(np.mean((predicted.astype(float) - obs[:, CONTEXT:].astype(float)) ** 2) / 255**2)
    Image.fromarray(np.concatenate(rows, 0)).resize((SHOWN * 96, len(rows) * 96), Image.NEAREST).save(args.out)
    print(f"wrote {args.out}: rows alternate real / predicted, open-loop steps {list(steps + 1)}; "
          f"open-loop pixel MSE {mse:.4f} (x/255 scale)")


if __name__ == "__main__":
    main()
