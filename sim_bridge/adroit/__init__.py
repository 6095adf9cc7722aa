"""The Shadow-hand Adroit tasks (door, hammer, pen, relocate) in MuJoCo.

The MuJoCo models and environment classes are gymnasium-robotics' (1.4.x),
used as installed; `sim_bridge.adroit.tasks` wraps them behind
`sim_bridge.task.Task` at 10 Hz. Rendering is offscreen through EGL
(`MUJOCO_GL=egl`, set here before MuJoCo is imported unless the caller chose a
backend already). `GALLIUM_DRIVER=llvmpipe` is set here too, unless the caller
set it: where EGL ends up on Mesa's software path (no GPU), it picks Mesa's
LLVM rasteriser rather than softpipe (~500 ms a frame). Mesa reads it when the
first EGL display is initialised (the first renderer), so it takes effect even
if `mujoco` was imported earlier; it does not steer EGL away from a GPU driver.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("GALLIUM_DRIVER", "llvmpipe")
