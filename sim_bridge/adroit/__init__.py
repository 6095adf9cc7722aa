"""The Shadow-hand Adroit tasks (door, hammer, pen, relocate) in MuJoCo.

The MuJoCo models and environment classes are gymnasium-robotics' (1.4.x),
used as installed; `sim_bridge.adroit.tasks` wraps them behind
`sim_bridge.task.Task` at 10 Hz. Rendering is offscreen through EGL
(`MUJOCO_GL=egl`, set here before MuJoCo is imported unless the caller chose a
backend already).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
