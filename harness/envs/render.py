"""Headless MuJoCo rendering: pick a working GL backend once per process, render fast.

MuJoCo reads `MUJOCO_GL` when it is first imported, so `ensure_backend()` must run before
anything imports `mujoco` (metaworld, gymnasium-robotics). It honours a user's `MUJOCO_GL`;
otherwise it tries EGL (Mesa's llvmpipe on a CPU machine, the NVIDIA driver on a GPU one),
then OSMesa, each rendering one frame in a throw-away subprocess under a timeout, and fails
with the Debian packages to install. On a machine with an NVIDIA GPU it refuses to fall back
silently to a software renderer. The GL vendor and renderer are recorded in every run's
config.yaml (env.renderer) and every dataset manifest.

Fast settings (recorded in every manifest and run config because they change the pixels): the
offscreen buffer is exactly the image size, no multisampling, no shadows, no reflections.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from harness.errors import UserError

BACKENDS = ("egl", "osmesa")
PACKAGES = {"egl": "libegl1 libgl1-mesa-dri", "osmesa": "libosmesa6"}
FAST_SETTINGS = {"msaa_samples": 0, "shadows": False, "reflections": False}

_PROBE = (
    "import mujoco;"
    "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\".1\"/></worldbody></mujoco>');"
    "r = mujoco.Renderer(m, 8, 8); r.update_scene(mujoco.MjData(m)); r.render();"
    "from OpenGL import GL; print(GL.glGetString(GL.GL_VENDOR).decode());"
    "print(GL.glGetString(GL.GL_RENDERER).decode()); r.close()"
)
PROBE_TIMEOUT_S = 60
# Renderer strings of Mesa's CPU rasterizers: about 30x slower than a GPU's EGL.
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "software rasterizer")
ALLOW_SOFTWARE_ENV = "MOTO_HARNESS_ALLOW_SOFTWARE_GL"


def _probe(backend: str) -> tuple[str, str] | str:
    """(GL vendor, GL renderer) if `backend` renders one frame in a fresh process within
    PROBE_TIMEOUT_S, else why not (a line of text)."""
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                             text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"rendering one frame did not finish within {PROBE_TIMEOUT_S} s (hung)"
    lines = out.stdout.strip().splitlines()
    if out.returncode == 0 and len(lines) >= 2:
        return lines[-2], lines[-1]
    error = (out.stderr.strip().splitlines() or ["no output"])[-1]
    return f"exit {out.returncode}: {error[:200]}"


def nvidia_gpu_present() -> bool:
    """An NVIDIA driver is loaded on this machine (its device node or proc entry exists)."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def is_software(backend: str, gl_renderer: str) -> bool:
    return backend == "osmesa" or any(s in gl_renderer.lower() for s in SOFTWARE_RENDERERS)


def ensure_backend() -> dict:
    """Choose the GL backend for this process (and its children), after rendering one frame
    with it; returns what was chosen. A user's MUJOCO_GL is the only candidate; otherwise EGL,
    then OSMesa, saying so on stderr when EGL failed. On a machine with an NVIDIA GPU, a
    software renderer that nobody asked for stops the run instead (UserError) unless
    MOTO_HARNESS_ALLOW_SOFTWARE_GL=1."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen and os.environ.get("HARNESS_GL_RENDERER"):
        return {"backend": chosen, "gl_vendor": os.environ.get("HARNESS_GL_VENDOR", "unknown"),
                "gl_renderer": os.environ["HARNESS_GL_RENDERER"]}
    if "mujoco" in sys.modules and not chosen:
        raise RuntimeError("harness.envs.render.ensure_backend() must run before mujoco is imported")
    candidates = [chosen] if chosen else list(BACKENDS)
    failures = []
    for backend in candidates:
        result = _probe(backend)
        if isinstance(result, str):
            failures.append(f"MUJOCO_GL={backend}: {result}")
            continue
        gl_vendor, gl_renderer = result
        if (not chosen and is_software(backend, gl_renderer) and nvidia_gpu_present()
                and os.environ.get(ALLOW_SOFTWARE_ENV) != "1"):
            tried = "; ".join(failures) or f"MUJOCO_GL={backend} gave the software {gl_renderer}"
            raise UserError(
                f"this machine has an NVIDIA GPU, but MuJoCo would render with the software "
                f"renderer '{gl_renderer}' ({backend}), about 30 times slower ({tried}). Make "
                "the NVIDIA driver's EGL usable: its libEGL_nvidia.so.0 and the glvnd vendor "
                "file /usr/share/glvnd/egl_vendor.d/10_nvidia.json (the driver's EGL package, "
                "e.g. libnvidia-gl-<version> on Debian/Ubuntu), and on a cluster a job that "
                "sees the GPU. To render in software anyway, set MUJOCO_GL=osmesa or "
                f"{ALLOW_SOFTWARE_ENV}=1.")
        if failures:
            print(f"harness: rendering with MUJOCO_GL={backend} ({gl_renderer}); "
                  f"{'; '.join(failures)}", file=sys.stderr, flush=True)
        os.environ["MUJOCO_GL"] = backend
        os.environ["PYOPENGL_PLATFORM"] = backend
        os.environ["HARNESS_GL_VENDOR"] = gl_vendor
        os.environ["HARNESS_GL_RENDERER"] = gl_renderer
        return {"backend": backend, "gl_vendor": gl_vendor, "gl_renderer": gl_renderer}
    wanted = " ".join(PACKAGES[b] for b in candidates if b in PACKAGES) or PACKAGES["egl"]
    raise UserError(
        f"no headless OpenGL backend works here ({'; '.join(failures)}). Install the system "
        f"packages with `apt-get install {wanted}` and try again."
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
        self.seconds = 0.0  # spent rendering, for the run's timings (harness.timings)

    def render(self, data):
        start = time.perf_counter()
        self._renderer.update_scene(data, self.camera)  # keeps the scene flags set above
        frame = self._renderer.render()
        self.seconds += time.perf_counter() - start
        return frame

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
