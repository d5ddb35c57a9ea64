"""Headless MuJoCo rendering: pick a working GL backend once per process, render fast.

MuJoCo reads `MUJOCO_GL` when it is first imported, so `ensure_backend()` must run before
anything imports `mujoco` (metaworld, gymnasium-robotics). It honours a user's `MUJOCO_GL`;
otherwise it tries EGL (Mesa's llvmpipe on a CPU machine, the NVIDIA driver on a GPU one),
then OSMesa, each in a throw-away subprocess, and fails with the Debian packages to install.

Fast settings (recorded in every manifest and run config because they change the pixels): the
offscreen buffer is exactly the image size, no multisampling, no shadows, no reflections.
"""

from __future__ import annotations

import os
import subprocess
import sys

from harness.errors import UserError

BACKENDS = ("egl", "osmesa")
PACKAGES = {"egl": "libegl1 libgl1-mesa-dri", "osmesa": "libosmesa6"}
FAST_SETTINGS = {"msaa_samples": 0, "shadows": False, "reflections": False}

_PROBE = (
    "import mujoco;"
    "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\".1\"/></worldbody></mujoco>');"
    "r = mujoco.Renderer(m, 8, 8); r.update_scene(mujoco.MjData(m)); r.render();"
    "from OpenGL import GL; print(GL.glGetString(GL.GL_RENDERER).decode()); r.close()"
)


def _probe(backend: str) -> str | None:
    """The GL renderer string if `backend` renders in a fresh process, else None."""
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                             text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None
    lines = out.stdout.strip().splitlines()
    return lines[-1] if out.returncode == 0 and lines else None


def ensure_backend() -> dict:
    """Choose the GL backend for this process (and its children); returns what was chosen."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen and os.environ.get("HARNESS_GL_RENDERER"):
        return {"backend": chosen, "gl_renderer": os.environ["HARNESS_GL_RENDERER"]}
    if "mujoco" in sys.modules and not chosen:
        raise RuntimeError("harness.envs.render.ensure_backend() must run before mujoco is imported")
    candidates = [chosen] if chosen else list(BACKENDS)
    for backend in candidates:
        gl_renderer = _probe(backend)
        if gl_renderer:
            os.environ["MUJOCO_GL"] = backend
            os.environ["PYOPENGL_PLATFORM"] = backend
            os.environ["HARNESS_GL_RENDERER"] = gl_renderer
            return {"backend": backend, "gl_renderer": gl_renderer}
    wanted = " ".join(PACKAGES[b] for b in candidates if b in PACKAGES) or PACKAGES["egl"]
    raise UserError(
        f"no headless OpenGL backend works here (tried MUJOCO_GL={', '.join(candidates)}). "
        f"Install the system packages with `apt-get install {wanted}` and try again."
    )


def renderer_info() -> dict:
    return {**ensure_backend(), **FAST_SETTINGS}


class FreeCameraRenderer:
    """Renders `data` of `model` from a fixed free camera into (size, size, 3) uint8, upright."""

    def __init__(self, model, size: int, distance: float, azimuth: float, elevation: float,
                 lookat: tuple[float, float, float]):
        ensure_backend()
        import mujoco

        model.vis.global_.offwidth = size
        model.vis.global_.offheight = size
        model.vis.quality.offsamples = FAST_SETTINGS["msaa_samples"]
        model.vis.quality.shadowsize = 0
        self._renderer = mujoco.Renderer(model, size, size)
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.distance, self.camera.azimuth, self.camera.elevation = distance, azimuth, elevation
        self.camera.lookat[:] = lookat

    def render(self, data):
        self._renderer.update_scene(data, self.camera)  # keeps the scene flags set above
        return self._renderer.render()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
