"""Adroit door, hammer, pen and relocate behind `sim_bridge.task.Task`, at 10 Hz.

The models and environment classes are gymnasium-robotics' (`AdroitHand*Env`,
1.4.x), used as installed: their assets, their seeded resets (door position,
nail-board height, pen goal orientation, ball and target positions) and their
`step` (for the last environment step of each control step; the 9 before it run as one
`do_simulation` call: the same physics, without 9 unused observations). This module adds
the 10 Hz control wrapper, the named observations and the sparse success reward.

Control. One `Task.step` applies one action, a *position target in joint
units* (metres for the arm slides, radians for every hinge), held for
`ENV_STEPS_PER_CONTROL` = 10 environment steps of 0.01 s (each 5 MuJoCo steps
of 0.002 s): 0.1 s, i.e. 10 Hz. The action layout is `arm` (the arm joints the
task has: door 4, hammer 2, relocate 6, pen none), `wrist` (2) and `fingers`
(22); its limits are the joint ranges (within what the actuators can reach).
The models' position actuators settle at `q = ctrl * gain / -bias` (a factor
2.5 for the arm joints, 1 for wrist and fingers), so the wrapper converts a
joint target to `ctrl = q * (-bias / gain)` and then to the environment's native
[-1, 1] action `(ctrl - mean) / half_range` of the control range. Under gravity
and contact the joints settle near, not exactly at, their targets.

Horizons (seconds at 10 Hz): door 10 s, hammer 12 s, pen 5 s, relocate 10 s
(`HORIZON_S`).

Observations (dict, see `sim_bridge.task`):
- `proprio`: `joint_pos_rad` and `joint_vel_rad_s` of the robot joints (arm,
  wrist, fingers; slides in metres), `palm_pos_m` (the `S_grasp` site) and
  `tactile`: the 21 `ST_Tch_*` touch sensors of the hand model (normal force, N).
- `state` (what experts and state policies see): the proprio fields, the palm
  orientation `palm_quat_xyzw`, `palm_jac` (for tasks with an arm: the 3 x n_arm
  positional Jacobian of the palm w.r.t. the arm joints, row-major, m/rad or
  m/m, so a pure-numpy expert can map Cartesian waypoint velocities to joint
  targets), task fields (object frames, below), and `env_obs`: the
  environment's own observation vector, unchanged.
- `rgb` (when made with a camera): uint8 (history, H, W, 3) from the model's
  `vil_camera`, oldest first; default 240 x 240, 3 frames.

Rendering (`render_quality`, `RENDER_QUALITY`): "fast" by default, the models'
own settings as "quality". On Mesa's software rasteriser (llvmpipe, no GPU) the
models' 4096 x 4096 shadow map and 8x multisampling cost ~20x the rest of a
frame, so "fast" renders without them (and with coarser tessellation of the
few primitive shapes); the images lose the shadows and the anti-aliasing.

Success (the suite's definitions), reward 1.0 on the success step, which
terminates the episode:
- door: door hinge >= 1.35 rad;
- hammer: nail within 1 cm of its goal;
- pen: pen centre within 7.5 cm of the goal position and pen axis . goal axis > 0.95;
- relocate: ball within 10 cm of the target.

`variation` (`sim_bridge.shifts.SceneVariation`, neutral by default) applies an evaluation shift to
the model once, at construction: the mass and inertia, or the sliding friction, of the bodies the
object joints move (door and latch, hammer and nail, ball, pen), and an offset of the camera.
"""

from __future__ import annotations

import os
import warnings
from collections import deque

import mujoco  # sim_bridge.adroit (imported first) has set MUJOCO_GL and GALLIUM_DRIVER
import numpy as np

from sim_bridge.shifts import SceneVariation
from sim_bridge.spec import Layout, TaskSpec
from sim_bridge.task import CameraConfig, Observation, Step, Task

CONTROL_RATE_HZ = 10.0
ENV_STEP_S = 0.01
"""One gymnasium-robotics environment step: 5 MuJoCo steps of 0.002 s."""
ENV_STEPS_PER_CONTROL = 10
"""Environment steps per control step: 10 x 0.01 s = 0.1 s."""
CAMERA_NAME = "vil_camera"
HORIZON_S = {"adroit_door": 10.0, "adroit_hammer": 12.0, "adroit_pen": 5.0, "adroit_relocate": 10.0}

DOOR_OPEN_RAD = 1.35
HAMMER_NAIL_TOLERANCE_M = 0.01
PEN_POSITION_TOLERANCE_M = 0.075
PEN_MIN_AXIS_DOT = 0.95
PEN_DROPPED_Z_M = 0.15
"""Pen centre height (m) below which it has left the hand (it rests at ~0.23 m in the hand, ~0.02 m on the floor)."""
RELOCATE_TOLERANCE_M = 0.10


# --- success detectors (pure, testable on constructed states) ---------------------------------

def door_success(door_hinge_rad: float) -> bool:
    """Door is open: hinge angle >= 1.35 rad."""
    return float(door_hinge_rad) >= DOOR_OPEN_RAD


def hammer_success(nail_pos_m: np.ndarray, nail_goal_pos_m: np.ndarray) -> bool:
    """Nail driven in: nail head within 1 cm of its goal."""
    return float(np.linalg.norm(np.asarray(nail_pos_m) - np.asarray(nail_goal_pos_m))) < HAMMER_NAIL_TOLERANCE_M


def pen_success(pen_pos_m: np.ndarray, target_pos_m: np.ndarray, pen_dir: np.ndarray, target_dir: np.ndarray) -> bool:
    """Pen at the goal: centre within 7.5 cm and unit axes with dot product > 0.95."""
    close = float(np.linalg.norm(np.asarray(pen_pos_m) - np.asarray(target_pos_m))) < PEN_POSITION_TOLERANCE_M
    return close and float(np.dot(pen_dir, target_dir)) > PEN_MIN_AXIS_DOT


def relocate_success(ball_pos_m: np.ndarray, target_pos_m: np.ndarray) -> bool:
    """Ball at the target: within 10 cm."""
    return float(np.linalg.norm(np.asarray(ball_pos_m) - np.asarray(target_pos_m))) < RELOCATE_TOLERANCE_M


# --- rendering --------------------------------------------------------------------------------

class RenderingUnavailable(RuntimeError):
    """No offscreen OpenGL context could be made for MuJoCo."""


RENDER_QUALITY: dict[str, dict[str, int]] = {
    "fast": {"offsamples": 0, "shadowsize": 0, "numslices": 12, "numstacks": 6},
    "quality": {"offsamples": 8, "shadowsize": 4096, "numslices": 28, "numstacks": 16},
}
"""`model.vis.quality` settings per render quality, applied before the renderer's GL context is made.

"quality" is what the gymnasium-robotics models ship with (8x multisampling, a 4096 x 4096 shadow map,
primitives tessellated 28 slices x 16 stacks). "fast" drops multisampling and the shadow map (shadowsize 0
turns shadows off) and tessellates the primitive shapes (door posts, table legs, handle, hammer, pen, ball;
the hand is meshes, unaffected) 12 x 6. Measured (README, Adroit hand tasks): shadows and anti-aliased edges
are gone, mean absolute pixel difference 7-9 of 255 at 84 and 240 px, almost all of it the shadows; the
coarser tessellation alone differs by < 0.25."""
DEFAULT_RENDER_QUALITY = "fast"


def check_render_quality(quality: str) -> str:
    """`quality` if it names an entry of `RENDER_QUALITY`, else ValueError naming the known ones."""
    if quality not in RENDER_QUALITY:
        raise ValueError(f"render_quality must be one of {sorted(RENDER_QUALITY)}, got {quality!r}")
    return quality


def make_renderer(model: mujoco.MjModel, camera: CameraConfig,
                  quality: str = DEFAULT_RENDER_QUALITY) -> mujoco.Renderer:
    """An offscreen renderer of `camera`'s size at render `quality`, or `RenderingUnavailable` naming the fix.

    Sets `model.vis.quality` to `RENDER_QUALITY[quality]` first (MuJoCo reads it when it makes the context;
    it changes nothing but rendering)."""
    for name, value in RENDER_QUALITY[check_render_quality(quality)].items():
        setattr(model.vis.quality, name, value)
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, camera.width_px)
    model.vis.global_.offheight = max(model.vis.global_.offheight, camera.height_px)
    try:
        return mujoco.Renderer(model, camera.height_px, camera.width_px)
    except Exception as exc:  # MuJoCo raises plain Exception/FatalError types depending on the backend
        # MuJoCo fixes its GL backend when first imported: import sim_bridge.adroit (or set
        # MUJOCO_GL=egl) before anything imports mujoco, or rendering falls back to GLFW.
        raise RenderingUnavailable(
            f"MuJoCo offscreen rendering is unavailable (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} when mujoco was "
            f"first imported?): {exc}. Install EGL and Mesa's software driver (`apt-get install -y libegl1 "
            "libopengl0 libgl1-mesa-dri`, or `make install` as root), set MUJOCO_GL=egl before mujoco is imported, "
            "or make the task without a camera (camera=None) for the state-only modes."
        ) from exc


def gl_renderer(renderer: mujoco.Renderer) -> str:
    """The GL_RENDERER string of `renderer`'s context, e.g. 'llvmpipe (LLVM 15.0.6, 256 bits)' on Mesa."""
    from OpenGL import GL  # PyOpenGL, on the platform mujoco chose (egl)

    renderer._gl_context.make_current()
    return GL.glGetString(GL.GL_RENDERER).decode()


def _env_class(name: str):
    """gymnasium-robotics' Adroit environment class (its import warns about dense-reward versions; silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gymnasium_robotics.envs.adroit_hand import adroit_door, adroit_hammer, adroit_pen, adroit_relocate
    return {
        "door": adroit_door.AdroitHandDoorEnv,
        "hammer": adroit_hammer.AdroitHandHammerEnv,
        "pen": adroit_pen.AdroitHandPenEnv,
        "relocate": adroit_relocate.AdroitHandRelocateEnv,
    }[name]


def _quat_xyzw(quat_wxyz: np.ndarray) -> np.ndarray:
    w, x, y, z = quat_wxyz
    return np.array([x, y, z, w])


# --- the tasks --------------------------------------------------------------------------------

class AdroitTask(Task):
    """One gymnasium-robotics Adroit environment at 10 Hz with named observations (see module docstring)."""

    name: str = ""
    env_name: str = ""
    object_joints: tuple[str, ...] = ()
    """Joints that belong to the scene, not the robot."""

    def __init__(self, camera: CameraConfig | None = None, horizon_s: float | None = None,
                 render_quality: str = DEFAULT_RENDER_QUALITY, variation: SceneVariation = SceneVariation()):
        """`render_quality`: "fast" (default) or "quality", see `RENDER_QUALITY`; used only with a camera."""
        self.render_quality = check_render_quality(render_quality)
        self.env = _env_class(self.env_name)(reward_type="sparse")
        self.model, self.data = self.env.model, self.env.data
        m = self.model
        self.variation = variation
        self._apply_variation(variation)
        joint_names = [m.joint(i).name for i in range(m.njnt)]
        robot = [j for j in joint_names if j not in self.object_joints]
        self._robot_qpos = np.array([m.jnt_qposadr[m.joint(j).id] for j in robot])
        self._robot_dof = np.array([m.jnt_dofadr[m.joint(j).id] for j in robot])
        self._arm_dof = np.array([m.jnt_dofadr[m.joint(j).id] for j in robot if j.startswith("AR")], dtype=int)
        self.n_arm = len(self._arm_dof)
        self._tactile = [i for i in range(m.nsensor) if m.sensor(i).name.startswith("ST_Tch_")]
        self._grasp_site = m.site("S_grasp").id
        ctrl_range = m.actuator_ctrlrange.copy()
        self._act_mean = ctrl_range.mean(axis=1)
        self._act_half_range = 0.5 * (ctrl_range[:, 1] - ctrl_range[:, 0])
        # Position actuators here are force = gain * ctrl + bias * q, so they settle at
        # q = ctrl * gain / -bias (2.5 for the arm, 1 for wrist and fingers): ctrl = q * ctrl_per_rad.
        self._ctrl_per_unit = -m.actuator_biasprm[:, 1] / m.actuator_gainprm[:, 0]
        joint_range = m.jnt_range[m.actuator_trnid[:, 0]]
        robot_ids = [m.joint(j).id for j in robot]
        if list(m.actuator_trnid[:, 0]) != robot_ids[:m.nu]:  # what `joint_target_actions` promises
            raise RuntimeError(f"{self.name}: actuators do not drive the first {m.nu} robot joints in order")
        target_low = np.maximum(joint_range[:, 0], ctrl_range[:, 0] / self._ctrl_per_unit)
        target_high = np.minimum(joint_range[:, 1], ctrl_range[:, 1] / self._ctrl_per_unit)

        horizon_s = HORIZON_S[self.name] if horizon_s is None else horizon_s
        if horizon_s <= 0:
            raise ValueError(f"{self.name}: horizon_s must be > 0, got {horizon_s}")
        action_fields = ((("arm", self.n_arm),) if self.n_arm else ()) + (("wrist", 2), ("fingers", m.nu - self.n_arm - 2))
        proprio = Layout((("joint_pos_rad", len(robot)), ("joint_vel_rad_s", len(robot)), ("palm_pos_m", 3),
                          ("tactile", len(self._tactile))))
        jac = (("palm_jac", 3 * self.n_arm),) if self.n_arm else ()
        env_obs_size = self.env.observation_space.shape[0]
        state = Layout(proprio.fields + (("palm_quat_xyzw", 4),) + jac + self.task_fields() + (("env_obs", env_obs_size),))
        self.spec = TaskSpec(
            name=self.name, robot="adroit", control_rate_hz=CONTROL_RATE_HZ,
            max_steps=int(round(horizon_s * CONTROL_RATE_HZ)), action=Layout(action_fields),
            action_low=tuple(target_low), action_high=tuple(target_high),
            proprio=proprio, state=state, camera="rgb", joint_names=tuple(robot),
            joint_target_actions=True,  # the actuators' targets are the first nu robot joints, in order
        )
        self.camera = camera
        self._renderer = make_renderer(m, camera, render_quality) if camera is not None else None
        self._cam_id = m.camera(CAMERA_NAME).id
        self._cam_pos0 = m.cam_pos[self._cam_id].copy() + np.array(variation.camera_offset_m)
        self._frames: deque[np.ndarray] = deque(maxlen=camera.history if camera else 1)
        self._env_obs = np.zeros(env_obs_size)
        self._steps = 0
        self._done = True

    def object_bodies(self) -> list[int]:
        """Ids of the bodies the object joints move (the scene's movable parts)."""
        m = self.model
        return sorted({int(m.jnt_bodyid[m.joint(j).id]) for j in self.object_joints})

    def _apply_variation(self, v: SceneVariation) -> None:
        m = self.model
        top = int(m.geom_priority.max()) + 1
        for b in self.object_bodies():
            m.body_mass[b] *= v.object_mass_scale
            m.body_inertia[b] *= v.object_mass_scale
            if v.object_friction_scale != 1.0:
                geoms = m.geom_bodyid == b
                m.geom_friction[geoms, 0] *= v.object_friction_scale
                # MuJoCo takes the larger friction of two touching geoms of equal priority, so a lower one on the
                # object alone would change nothing against the hand's 1.0: the higher priority makes it count
                m.geom_priority[geoms] = top

    # task-specific parts ------------------------------------------------------------------
    def task_fields(self) -> tuple[tuple[str, int], ...]:
        raise NotImplementedError

    def task_values(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def is_success(self) -> bool:
        """The suite's success condition on the current simulation state."""
        raise NotImplementedError

    # Task interface ----------------------------------------------------------------------------
    @property
    def step_count(self) -> int:
        return self._steps

    def reset(self, seed: int) -> Observation:
        self._env_obs, _ = self.env.reset(seed=int(seed))
        self._steps, self._done = 0, False
        if self._renderer is not None:
            offset = np.zeros(3)
            if self.camera.randomize_viewpoint:
                offset = np.random.default_rng([int(seed), 7]).uniform(-0.03, 0.03, size=3)
            self.model.cam_pos[self._cam_id] = self._cam_pos0 + offset
            mujoco.mj_camlight(self.model, self.data)  # the reset's mj_forward placed the camera before the move
            self._frames.clear()
            frame = self._render()
            for _ in range(self.camera.history):
                self._frames.append(frame)
        return self._observe()

    def step(self, action: np.ndarray) -> Step:
        if self._done:
            raise RuntimeError(f"{self.name}: step() after the episode ended; call reset(seed) first")
        target = self.spec.clip_action(action)
        native = (target * self._ctrl_per_unit - self._act_mean) / self._act_half_range  # the env's [-1, 1] action
        # The first 9 environment steps' physics in one call (the action is held, so it is the same
        # mj_step sequence as 9 env.step calls, bit for bit), then the 10th through env.step for its
        # observation and success: their reward and observation work, 10 times per control step, was
        # ~1 ms of the ~4 ms of a state-mode step.
        env = self.env
        env.do_simulation(env.act_mean + np.clip(native, -1.0, 1.0) * env.act_rng,
                          env.frame_skip * (ENV_STEPS_PER_CONTROL - 1))
        self._env_obs, _, _, _, env_info = env.step(native)
        env_success = bool(env_info["success"])
        self._steps += 1
        success = self.is_success()
        truncated = not success and self._steps >= self.spec.max_steps
        self._done = success or truncated
        if self._renderer is not None:
            self._frames.append(self._render())
        return Step(obs=self._observe(), reward=1.0 if success else 0.0, success=success, terminated=success,
                    truncated=truncated, info={"success": success, "env_success": env_success,
                                               "sim_time_s": self._steps / CONTROL_RATE_HZ})

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.env.close()

    # observation --------------------------------------------------------------------------------
    def _render(self) -> np.ndarray:
        self._renderer.update_scene(self.data, camera=self._cam_id)
        return self._renderer.render().copy()

    def _observe(self) -> Observation:
        d = self.data
        joint_pos = d.qpos[self._robot_qpos].copy()
        palm = d.site_xpos[self._grasp_site].copy()
        proprio = {
            "joint_pos_rad": joint_pos,
            "joint_vel_rad_s": d.qvel[self._robot_dof],
            "palm_pos_m": palm,
            "tactile": np.array([d.sensordata[self.model.sensor_adr[i]] for i in self._tactile]),
        }
        quat_wxyz = np.zeros(4)
        mujoco.mju_mat2Quat(quat_wxyz, d.site_xmat[self._grasp_site])
        state = dict(proprio, palm_quat_xyzw=_quat_xyzw(quat_wxyz), env_obs=self._env_obs, **self.task_values())
        if self.n_arm:
            jacp = np.zeros((3, self.model.nv))
            mujoco.mj_jacSite(self.model, d, jacp, None, self._grasp_site)
            state["palm_jac"] = jacp[:, self._arm_dof].reshape(-1)
        obs = {"proprio": self.spec.proprio.pack(proprio), "state": self.spec.state.pack(state),
               "joint_pos_rad": joint_pos.astype(np.float64)}
        if self._renderer is not None:
            obs["rgb"] = np.stack(list(self._frames))
        return obs

    def _site(self, name: str) -> np.ndarray:
        return self.data.site(name).xpos.copy()


class DoorTask(AdroitTask):
    """Undo the latch and swing the door open (hinge >= 1.35 rad); the door frame's position is seeded."""

    name, env_name, object_joints = "adroit_door", "door", ("door_hinge", "latch")

    def task_fields(self):
        return (("handle_pos_m", 3), ("door_hinge_rad", 1), ("latch_rad", 1))

    def task_values(self):
        return {"handle_pos_m": self._site("S_handle"), "door_hinge_rad": self.data.joint("door_hinge").qpos.copy(),
                "latch_rad": self.data.joint("latch").qpos.copy()}

    def is_success(self) -> bool:
        return door_success(self.data.joint("door_hinge").qpos[0])


class HammerTask(AdroitTask):
    """Pick up the hammer and drive the nail in (nail within 1 cm of its goal); the board height is seeded."""

    name, env_name = "adroit_hammer", "hammer"
    object_joints = ("nail_dir", "OBJTx", "OBJTy", "OBJTz", "OBJRx", "OBJRy", "OBJRz")

    def task_fields(self):
        return (("hammer_pos_m", 3), ("hammer_quat_xyzw", 4), ("hammer_head_pos_m", 3), ("nail_pos_m", 3),
                ("nail_goal_pos_m", 3))

    def task_values(self):
        body = self.data.body("Object")
        return {"hammer_pos_m": body.xpos.copy(), "hammer_quat_xyzw": _quat_xyzw(body.xquat),
                "hammer_head_pos_m": self._site("tool"), "nail_pos_m": self._site("S_target"),
                "nail_goal_pos_m": self._site("nail_goal")}

    def is_success(self) -> bool:
        return hammer_success(self._site("S_target"), self._site("nail_goal"))


class PenTask(AdroitTask):
    """Reorient the pen in the hand to the seeded goal orientation (no arm: wrist and fingers only)."""

    name, env_name = "adroit_pen", "pen"
    object_joints = ("OBJTx", "OBJTy", "OBJTz", "OBJRx", "OBJRy", "OBJRz")

    def task_fields(self):
        return (("pen_pos_m", 3), ("pen_dir", 3), ("target_dir", 3), ("target_pos_m", 3))

    def _dirs(self) -> tuple[np.ndarray, np.ndarray]:
        pen = self._site("object_top") - self._site("object_bottom")
        goal = self._site("target_top") - self._site("target_bottom")
        return pen / np.linalg.norm(pen), goal / np.linalg.norm(goal)

    def task_values(self):
        pen_dir, target_dir = self._dirs()
        return {"pen_pos_m": self.data.body("Object").xpos.copy(), "pen_dir": pen_dir, "target_dir": target_dir,
                "target_pos_m": self._site("eps_ball")}

    def is_success(self) -> bool:
        pen_dir, target_dir = self._dirs()
        return pen_success(self.data.body("Object").xpos, self._site("eps_ball"), pen_dir, target_dir)

    def shaped_reward(self) -> float:
        """Orientation error plus distance, never positive, so reaching the goal (which ends the episode) is
        worth more than hovering near it: (pen axis . goal axis - 1) - |pen - goal| in m - 1 if the pen has
        fallen out of the hand (centre below `PEN_DROPPED_Z_M`)."""
        pen_dir, target_dir = self._dirs()
        pos = self.data.body("Object").xpos
        dropped = pos[2] < PEN_DROPPED_Z_M
        return float(np.dot(pen_dir, target_dir)) - 1.0 - float(np.linalg.norm(pos - self._site("eps_ball"))) - float(dropped)


class RelocateTask(AdroitTask):
    """Pick up the ball and move it to the floating target (within 10 cm); ball and target are seeded."""

    name, env_name = "adroit_relocate", "relocate"
    object_joints = ("OBJTx", "OBJTy", "OBJTz", "OBJRx", "OBJRy", "OBJRz")

    def task_fields(self):
        return (("ball_pos_m", 3), ("target_pos_m", 3))

    def task_values(self):
        return {"ball_pos_m": self.data.body("Object").xpos.copy(), "target_pos_m": self._site("target")}

    def is_success(self) -> bool:
        return relocate_success(self.data.body("Object").xpos, self._site("target"))
