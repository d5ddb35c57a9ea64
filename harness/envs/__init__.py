"""The task registry: ids like 'metaworld/door-open', 'metaworld-state/door-open', 'toy/reach',
'gym/Pendulum-v1'.

`task_info(task_id)` validates an id (suggesting the closest name) without building a
simulator; `make_env(task_id, seed)` builds the environment.
"""

from __future__ import annotations

from harness.envs.base import TaskInfo
from harness.errors import UserError, closest

FAMILIES = ("metaworld", "metaworld-state", "kitchen", "toy", "gym")


def task_info(task_id: str) -> TaskInfo:
    if not isinstance(task_id, str) or "/" not in task_id:
        raise UserError(f"task '{task_id}' is not of the form FAMILY/NAME with FAMILY one of "
                        f"{', '.join(FAMILIES)} (e.g. 'metaworld/door-open', 'toy/reach').")
    family, name = task_id.split("/", 1)
    if family in ("metaworld", "metaworld-state"):
        from harness.envs import metaworld

        names = metaworld.task_names()
        if name.endswith("-v3") or name.endswith("-v2"):
            raise UserError(f"task '{task_id}': name MetaWorld tasks without the version suffix, "
                            f"e.g. '{family}/{name[:-3]}'.")
        if name not in names:
            raise UserError(f"unknown MetaWorld task '{task_id}'.{closest(name, names)} "
                            "`python -m harness list` prints every task.")
        return metaworld.task_info(name, pixels=family == "metaworld")
    if family == "kitchen":
        from harness.envs import kitchen

        if name not in kitchen.TARGETS:
            raise UserError(f"unknown Kitchen task '{task_id}'.{closest(name, kitchen.TARGETS)} "
                            "Kitchen tasks: 'kitchen/mixed', 'kitchen/partial' (the paper's names).")
        return kitchen.task_info(name)
    if family == "toy":
        from harness.envs import toy

        infos = {"reach": toy.INFO, "reach-state": toy.STATE_INFO}
        if name not in infos:
            raise UserError(f"unknown toy task '{task_id}'.{closest(name, infos)} "
                            "Toy tasks: 'toy/reach' (pixels), 'toy/reach-state' (state vector).")
        return infos[name]
    if family == "gym":
        from harness.envs import gym

        return gym.task_info(name)
    raise UserError(f"unknown task family '{family}' in '{task_id}'.{closest(family, FAMILIES)} "
                    f"Families: {', '.join(FAMILIES)}.")


def make_env(task_id: str, seed: int):
    info = task_info(task_id)
    name = task_id.split("/", 1)[1]
    if info.family == "metaworld":
        from harness.envs.metaworld import MetaWorldPixels

        return MetaWorldPixels(name, seed)
    if info.family == "metaworld-state":
        from harness.envs.metaworld import MetaWorldState

        return MetaWorldState(name, seed)
    if info.family == "kitchen":
        from harness.envs.kitchen import KitchenPixels

        return KitchenPixels(name, seed)
    if info.family == "toy":
        from harness.envs.toy import ToyReach

        return ToyReach(seed, pixels=info.pixels)
    from harness.envs.gym import GymState

    return GymState(name, seed)


def env_settings(task_id: str) -> dict:
    """`make_env(task_id, seed).settings()`, without building the simulator."""
    info = task_info(task_id)
    if info.family in ("metaworld", "metaworld-state"):
        from harness.envs import metaworld

        return metaworld.settings(task_id)
    if info.family == "kitchen":
        from harness.envs import kitchen

        return kitchen.settings(task_id)
    if info.family == "toy":
        from harness.envs import toy

        return toy.settings(info.pixels)
    from harness.envs import gym

    return gym.settings(info)


def list_tasks() -> dict[str, list[str]]:
    from harness.envs import kitchen, metaworld

    return {"metaworld": [f"metaworld/{n}" for n in metaworld.task_names()],
            "metaworld-state": [f"metaworld-state/{n}" for n in metaworld.task_names()],
            "kitchen": [f"kitchen/{n}" for n in kitchen.task_names()],
            "toy": ["toy/reach", "toy/reach-state"], "gym": ["gym/<any continuous-action Gymnasium id>"]}


__all__ = ["TaskInfo", "env_settings", "list_tasks", "make_env", "task_info"]
