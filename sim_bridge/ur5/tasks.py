"""UR5 tasks in PyBullet: pick, bowl and push (`ur5_pick`, `ur5_bowl`, `ur5_push`).

Each task owns one PyBullet client (`p.connect(p.DIRECT)`), so several tasks can
live in one process. `reset(seed)` rebuilds the scene (`resetSimulation`) and
draws everything from `np.random.default_rng(seed)`: object positions, sizes and
yaw, the start tool position; the camera viewpoint perturbation (when asked for)
comes from a separate stream of the same seed, so turning it on does not change
the episode. The same seed therefore always gives the same episode.

Actions: tool linear velocity (m/s, capped per task) + binary gripper (0 open,
1 closed), see `sim_bridge.ur5.robot`. Observations as in `sim_bridge.task`:
proprio (8) = tool_pos (3, m), tool_vel (3, m/s, finite difference over the
control step), gripper_state (opening fraction, 0 closed .. 1 open),
gripper_vel (opening fraction per second). The depth camera (TinyRenderer) is
rendered only when the task was made with a `CameraConfig`.

Rewards are sparse: 1 on the step the success condition holds, which also
terminates the episode.

`variation` (`sim_bridge.shifts.SceneVariation`, neutral by default) applies an evaluation shift:
cube mass and friction factors, a camera eye offset, a visual-only distractor box. It draws nothing
from the episode's stream, so a shifted episode starts from the nominal one's layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pybullet as p

from sim_bridge.shifts import SceneVariation
from sim_bridge.spec import Layout, TaskSpec, depth_to_unit
from sim_bridge.task import CameraConfig, Observation, Step, Task
from sim_bridge.ur5 import model
from sim_bridge.ur5.robot import CONTROL_RATE_HZ, PHYSICS_RATE_HZ, UR5Robot, Workspace

ACTION = Layout((("tool_vel", 3), ("gripper", 1)))
PROPRIO = Layout((("tool_pos", 3), ("tool_vel", 3), ("gripper_state", 1), ("gripper_vel", 1)))
JOINT_NAMES = model.ARM_JOINTS + model.FINGER_JOINTS
"""Joint order of `joint_pos_rad`: six arm angles (rad), then the two finger positions (m)."""

TABLE_FRICTION = 0.6
CUBE_FRICTION = 0.8
CUBE_DENSITY_KG_M3 = 600.0
"""Wood-like cubes: 16 g (3 cm, clipped up to 30 g) .. 307 g (8 cm)."""
CUBE_MASS_RANGE_KG = (0.03, 0.3)
"""Clip of a cube's mass; a `variation`'s mass factor scales both ends."""

DISTRACTOR_RGBA = (0.55, 0.55, 0.55, 1.0)
DISTRACTOR_CLEARANCE_M = 0.12
"""Least xy distance of the distractor's centre from each object's (cube, bowl, push target)."""

SOLVER_ITERATIONS = 50
"""PyBullet constraint-solver iterations per physics step (PyBullet's default 50)."""

START_TOOL_LOW_M = (0.35, -0.15, 0.15)
START_TOOL_HIGH_M = (0.6, 0.15, 0.25)
"""Start tool position range (robot base frame)."""


@dataclass(frozen=True)
class CameraPose:
    """Depth camera pose and intrinsics (robot base frame): looks at the table from opposite the robot."""

    eye_m: tuple[float, float, float] = (1.0, 0.0, 0.7)
    target_m: tuple[float, float, float] = (0.45, 0.0, 0.0)
    fov_deg: float = 45.0
    near_m: float = 0.1
    far_m: float = 2.0
    eye_jitter_m: float = 0.05
    """Uniform perturbation of each eye coordinate when the viewpoint is randomised."""
    target_jitter_m: float = 0.03


def _quat_yaw(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


class UR5Task(Task):
    """Common machinery of the UR5 tasks; subclasses build their objects and define success."""

    name: str
    max_steps: int
    max_tool_vel_m_s: float
    object_fields: tuple[tuple[str, int], ...]

    def __init__(self, camera: CameraConfig | None = None, camera_pose: CameraPose = CameraPose(),
                 workspace: Workspace = Workspace(), variation: SceneVariation = SceneVariation()):
        self.camera = camera
        self.camera_pose = camera_pose
        self.workspace = workspace
        self.variation = variation
        cap = self.max_tool_vel_m_s
        self.spec = TaskSpec(
            name=self.name, robot="ur5", control_rate_hz=CONTROL_RATE_HZ, max_steps=self.max_steps,
            action=ACTION, action_low=(-cap, -cap, -cap, 0.0), action_high=(cap, cap, cap, 1.0),
            proprio=PROPRIO, state=Layout(PROPRIO.fields + self.object_fields), camera="depth",
            binary_action_fields=("gripper",), joint_names=JOINT_NAMES,
            joint_vel_limit=(model.JOINT_VEL_LIMIT_RAD_S,) * len(model.ARM_JOINTS) + (model.FINGER_VEL_M_S,) * 2,
            workspace_low_m=workspace.low_m, workspace_high_m=workspace.high_m,
            depth_range_m=(camera_pose.near_m, camera_pose.far_m))
        self.client = p.connect(p.DIRECT)
        self.robot: UR5Robot | None = None
        self.cube: int | None = None
        self.cube_size_m = 0.05
        self._steps = 0
        self._clips = 0
        self.distractor: tuple[np.ndarray, np.ndarray] | None = None
        """This episode's distractor box (centre, half extents; m) under the `distractor` shift."""
        self._seed: int | None = None
        self._frames: list[np.ndarray] = []
        self._view = self._proj = None

    # --- Task interface ------------------------------------------------------------------------
    @property
    def step_count(self) -> int:
        return self._steps

    def reset(self, seed: int) -> Observation:
        if self.client is None:
            raise RuntimeError(f"{self.name}: task is closed")
        seed = int(seed)
        rng = np.random.default_rng(seed)
        c = self.client
        p.resetSimulation(physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setPhysicsEngineParameter(fixedTimeStep=1.0 / PHYSICS_RATE_HZ, numSolverIterations=SOLVER_ITERATIONS,
                                    physicsClientId=c)
        table = p.createMultiBody(0, p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c), physicsClientId=c)
        p.changeDynamics(table, -1, lateralFriction=TABLE_FRICTION, physicsClientId=c)
        self.robot = UR5Robot(c, self.workspace)
        self._build_scene(rng)
        self.robot.reset(rng.uniform(START_TOOL_LOW_M, START_TOOL_HIGH_M))
        self.distractor = self._make_distractor(np.random.default_rng([seed, 2])) if self.variation.distractor else None
        self._seed, self._steps, self._clips = seed, 0, 0
        self._tool_pos, _ = self.robot.tool_pose()
        self._joints = self.robot.joint_positions()
        self._opening = self.robot.opening_fraction()
        if self.camera is not None:
            self._setup_camera(np.random.default_rng([seed, 1]))
            self._frames = []
        return self._observe(np.zeros(3), 0.0)

    def step(self, action: np.ndarray) -> Step:
        if self.robot is None:
            raise RuntimeError(f"{self.name}: call reset(seed) before step()")
        a = self.spec.clip_action(action)
        clipped = self.robot.control_step(a[:3], a[3] > 0.5)
        self._steps += 1
        self._clips += clipped
        prev_pos, prev_opening = self._tool_pos, self._opening
        self._tool_pos, _ = self.robot.tool_pose()
        self._joints = self.robot.joint_positions()
        self._opening = self._joints[6:].sum() / (2 * model.FINGER_STROKE_M)
        obs = self._observe((self._tool_pos - prev_pos) * CONTROL_RATE_HZ, (self._opening - prev_opening) * CONTROL_RATE_HZ)
        success = self.is_success()
        return Step(obs=obs, reward=1.0 if success else 0.0, success=success, terminated=success,
                    truncated=(not success) and self._steps >= self.max_steps,
                    info={"success": success, "workspace_clipped": clipped, "workspace_clips": self._clips,
                          "seed": self._seed})

    def close(self) -> None:
        if self.client is not None:
            try:
                p.disconnect(physicsClientId=self.client)
            except p.error:
                pass
            self.client = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: pybullet may already be gone
            pass

    # --- observation ---------------------------------------------------------------------------
    def _observe(self, tool_vel: np.ndarray, gripper_vel: float) -> Observation:
        proprio = np.empty(8, np.float32)
        proprio[0:3] = self._tool_pos
        proprio[3:6] = tool_vel
        proprio[6] = self._opening
        proprio[7] = gripper_vel
        obs = {
            "proprio": proprio,
            "state": np.concatenate([proprio, self._object_state()]).astype(np.float32),
            "joint_pos_rad": self._joints,
        }
        if self.camera is not None:
            frame = self.render_depth()
            if not self._frames:
                self._frames = [frame] * self.camera.history
            else:
                self._frames = self._frames[1:] + [frame]
            obs["depth"] = np.stack(self._frames)
        return obs

    def _setup_camera(self, rng: np.random.Generator) -> None:
        cp, cam = self.camera_pose, self.camera
        eye, target = np.array(cp.eye_m) + np.array(self.variation.camera_offset_m), np.array(cp.target_m)
        if cam.randomize_viewpoint:
            eye = eye + rng.uniform(-cp.eye_jitter_m, cp.eye_jitter_m, 3)
            target = target + rng.uniform(-cp.target_jitter_m, cp.target_jitter_m, 3)
        self.camera_eye_m, self.camera_target_m = eye, target
        """This episode's camera position and the point it looks at (base frame), up +z."""
        self._view = p.computeViewMatrix(list(eye), list(target), [0, 0, 1], physicsClientId=self.client)
        self._proj = p.computeProjectionMatrixFOV(cp.fov_deg, cam.width_px / cam.height_px, cp.near_m, cp.far_m,
                                                  physicsClientId=self.client)

    def render_depth(self) -> np.ndarray:
        """One depth frame (H, W) float32: metric depth mapped linearly from [near, far] to [0, 1]."""
        return depth_to_unit(self.render_depth_m(), self.camera_pose.near_m, self.camera_pose.far_m)

    def render_depth_m(self) -> np.ndarray:
        """One depth frame (H, W) float32 in metres (what a depth camera driver publishes, REP 118)."""
        cam, cp = self.camera, self.camera_pose
        if cam is None:
            raise RuntimeError(f"{self.name}: made without a camera")
        _, _, _, buf, _ = p.getCameraImage(cam.width_px, cam.height_px, self._view, self._proj,
                                           renderer=p.ER_TINY_RENDERER, flags=p.ER_NO_SEGMENTATION_MASK,
                                           physicsClientId=self.client)
        buf = np.asarray(buf, np.float32).reshape(cam.height_px, cam.width_px)
        near, far = cp.near_m, cp.far_m
        return far * near / (far - (far - near) * buf)

    # --- objects -------------------------------------------------------------------------------
    def _make_cube(self, pos: np.ndarray, size_m: float, yaw: float) -> int:
        c, half = self.client, size_m / 2
        k = self.variation.object_mass_scale
        mass = float(np.clip(k * CUBE_DENSITY_KG_M3 * size_m**3, k * CUBE_MASS_RANGE_KG[0], k * CUBE_MASS_RANGE_KG[1]))
        body = p.createMultiBody(
            mass, p.createCollisionShape(p.GEOM_BOX, halfExtents=[half] * 3, physicsClientId=c),
            p.createVisualShape(p.GEOM_BOX, halfExtents=[half] * 3, rgbaColor=[0.85, 0.2, 0.2, 1], physicsClientId=c),
            basePosition=[float(pos[0]), float(pos[1]), half], baseOrientation=_quat_yaw(yaw), physicsClientId=c)
        p.changeDynamics(body, -1, lateralFriction=CUBE_FRICTION * self.variation.object_friction_scale,
                         spinningFriction=0.001, physicsClientId=c)
        self.cube, self.cube_size_m = body, size_m
        return body

    def object_xy(self) -> list[np.ndarray]:
        """Table positions (xy, m) of the task's objects at reset: the cube, and the bowl or push target."""
        return [self.cube_pose()[0][:2]]

    def _make_distractor(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A grey box with no collision shape (only cameras see it), >= DISTRACTOR_CLEARANCE_M from the
        objects; returns its centre and half extents (m)."""
        objects = self.object_xy()
        for _ in range(1000):
            xy = rng.uniform((0.35, -0.25), (0.7, 0.25))
            if all(np.linalg.norm(xy - o) >= DISTRACTOR_CLEARANCE_M for o in objects):
                break
        else:  # the table region always has room for one box; this guards a layout change
            raise RuntimeError(f"{self.name}: no place for the distractor {DISTRACTOR_CLEARANCE_M} m from {objects}")
        half = np.array([*(rng.uniform(0.02, 0.035, 2)), rng.uniform(0.02, 0.05)])
        centre = np.array([xy[0], xy[1], half[2]])
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=list(half), rgbaColor=list(DISTRACTOR_RGBA),
                                  physicsClientId=self.client)
        p.createMultiBody(0, -1, vis, basePosition=list(centre), baseOrientation=_quat_yaw(rng.uniform(-0.8, 0.8)),
                          physicsClientId=self.client)
        return centre, half

    def cube_pose(self) -> tuple[np.ndarray, np.ndarray]:
        pos, quat = p.getBasePositionAndOrientation(self.cube, physicsClientId=self.client)
        return np.array(pos), np.array(quat)

    def place_cube(self, pos_m, quat_xyzw=(0.0, 0.0, 0.0, 1.0), lin_vel_m_s=(0.0, 0.0, 0.0)) -> None:
        """Put the cube at a constructed pose and velocity (for success-detector tests and resets)."""
        if self.cube is None:
            raise RuntimeError(f"{self.name}: call reset(seed) first")
        p.resetBasePositionAndOrientation(self.cube, list(pos_m), list(quat_xyzw), physicsClientId=self.client)
        p.resetBaseVelocity(self.cube, list(lin_vel_m_s), [0.0, 0.0, 0.0], physicsClientId=self.client)

    # --- per task ------------------------------------------------------------------------------
    def _build_scene(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _object_state(self) -> np.ndarray:
        raise NotImplementedError

    def is_success(self) -> bool:
        """The task's success condition on the current simulator state."""
        raise NotImplementedError


class PickTask(UR5Task):
    """Pick up a cube (edge 3..8 cm, yaw +-0.25 rad): success once its bottom is > 8 cm above the table."""

    name = "ur5_pick"
    max_steps = 200
    max_tool_vel_m_s = 0.15
    object_fields = (("cube_pos", 3), ("cube_size", 1))
    lift_height_m = 0.08
    cube_size_range_m = (0.03, 0.08)

    def _build_scene(self, rng: np.random.Generator) -> None:
        size = rng.uniform(*self.cube_size_range_m)
        xy = rng.uniform((0.4, -0.2), (0.65, 0.2))
        self._make_cube(xy, size, rng.uniform(-0.25, 0.25))

    def _object_state(self) -> np.ndarray:
        pos, _ = self.cube_pose()
        return np.array([*pos, self.cube_size_m])

    def is_success(self) -> bool:
        pos, _ = self.cube_pose()
        return bool(pos[2] - self.cube_size_m / 2 > self.lift_height_m)


BOWL_FLOOR_RADIUS_M = 0.09
BOWL_FLOOR_THICKNESS_M = 0.01
BOWL_WALL_RADIUS_M = 0.085
"""Radius of the wall centre line; the inside of the wall is 8 cm from the bowl centre."""
BOWL_WALL_THICKNESS_M = 0.01
BOWL_WALL_HEIGHT_M = 0.05
BOWL_WALL_SEGMENTS = 16
BOWL_RIM_HEIGHT_M = BOWL_FLOOR_THICKNESS_M + BOWL_WALL_HEIGHT_M


class BowlTask(UR5Task):
    """Put a cube (4..6.5 cm) into a bowl (a static ring of 16 wall boxes on a disc; rim 6 cm high).

    Success: cube xy within 4 cm of the bowl centre, cube top above rim - 2 cm, cube centre below the
    rim (inside, not held above it), and the cube resting (speed < 5 cm/s).
    """

    name = "ur5_bowl"
    max_steps = 600
    max_tool_vel_m_s = 0.15
    object_fields = (("cube_pos", 3), ("cube_size", 1), ("bowl_pos", 3))
    cube_size_range_m = (0.04, 0.065)
    success_radius_m = 0.04
    rest_speed_m_s = 0.05
    min_distance_m = 0.18
    """Cube-to-bowl centre distance at placement: bowl radius (9 cm) + open gripper half-span (6.7 cm) + margin,
    so the open fingers never land on the rim when grasping."""

    def _build_scene(self, rng: np.random.Generator) -> None:
        size = rng.uniform(*self.cube_size_range_m)
        bowl_xy = rng.uniform((0.4, -0.2), (0.65, 0.2))
        while True:
            cube_xy = rng.uniform((0.4, -0.2), (0.65, 0.2))
            if np.linalg.norm(cube_xy - bowl_xy) > self.min_distance_m:
                break
        self.bowl_pos = np.array([bowl_xy[0], bowl_xy[1], 0.0])
        self.bowl = self._make_bowl(self.bowl_pos)
        self._make_cube(cube_xy, size, rng.uniform(-0.25, 0.25))

    def _make_bowl(self, pos: np.ndarray) -> int:
        c, n = self.client, BOWL_WALL_SEGMENTS
        seg_half_len = BOWL_WALL_RADIUS_M * math.tan(math.pi / n) + 0.002
        wall_half = [BOWL_WALL_THICKNESS_M / 2, seg_half_len, BOWL_WALL_HEIGHT_M / 2]
        wall_z = BOWL_FLOOR_THICKNESS_M + BOWL_WALL_HEIGHT_M / 2
        positions = [[0.0, 0.0, BOWL_FLOOR_THICKNESS_M / 2]]
        orientations = [[0.0, 0.0, 0.0, 1.0]]
        for k in range(n):
            theta = 2 * math.pi * k / n
            positions.append([BOWL_WALL_RADIUS_M * math.cos(theta), BOWL_WALL_RADIUS_M * math.sin(theta), wall_z])
            orientations.append(list(_quat_yaw(theta)))
        types = [p.GEOM_CYLINDER] + [p.GEOM_BOX] * n
        half_extents = [[0.0, 0.0, 0.0]] + [wall_half] * n
        radii = [BOWL_FLOOR_RADIUS_M] + [0.0] * n
        lengths = [BOWL_FLOOR_THICKNESS_M] + [0.0] * n
        col = p.createCollisionShapeArray(types, radii=radii, halfExtents=half_extents, lengths=lengths,
                                          collisionFramePositions=positions,
                                          collisionFrameOrientations=orientations, physicsClientId=c)
        vis = p.createVisualShapeArray(types, radii=radii, halfExtents=half_extents, lengths=lengths,
                                       visualFramePositions=positions, visualFrameOrientations=orientations,
                                       physicsClientId=c)  # rgbaColors here crashes pybullet 3.2.7 for > 2 shapes
        body = p.createMultiBody(0, col, vis, basePosition=list(pos), physicsClientId=c)
        p.changeVisualShape(body, -1, rgbaColor=[0.3, 0.6, 0.9, 1], physicsClientId=c)
        p.changeDynamics(body, -1, lateralFriction=0.5, physicsClientId=c)
        return body

    def _object_state(self) -> np.ndarray:
        pos, _ = self.cube_pose()
        return np.array([*pos, self.cube_size_m, *self.bowl_pos])

    def object_xy(self) -> list[np.ndarray]:
        return [*super().object_xy(), self.bowl_pos[:2]]

    def is_success(self) -> bool:
        pos, _ = self.cube_pose()
        lin_vel, _ = p.getBaseVelocity(self.cube, physicsClientId=self.client)
        near = np.linalg.norm(pos[:2] - self.bowl_pos[:2]) < self.success_radius_m
        high_enough = pos[2] + self.cube_size_m / 2 > BOWL_RIM_HEIGHT_M - 0.02
        inside = pos[2] < BOWL_RIM_HEIGHT_M
        resting = np.linalg.norm(lin_vel) < self.rest_speed_m_s
        return bool(near and high_enough and inside and resting)


class PushTask(UR5Task):
    """Push a cube (4..6 cm) into a fixed target region: success when its xy distance to the centre < 3 cm."""

    name = "ur5_push"
    max_steps = 600
    max_tool_vel_m_s = 0.1
    object_fields = (("cube_pos", 3), ("cube_size", 1), ("target_pos", 3))
    target_pos = np.array([0.55, 0.0, 0.0])
    """Centre of the fixed target region on the table."""
    success_radius_m = 0.03
    cube_size_range_m = (0.04, 0.06)
    start_distance_range_m = (0.1, 0.2)
    """Distance of the cube's start position from the target centre."""

    def _build_scene(self, rng: np.random.Generator) -> None:
        size = rng.uniform(*self.cube_size_range_m)
        while True:
            angle = rng.uniform(0, 2 * math.pi)
            dist = rng.uniform(*self.start_distance_range_m)
            xy = self.target_pos[:2] + dist * np.array([math.cos(angle), math.sin(angle)])
            if 0.38 <= xy[0] <= 0.72 and -0.22 <= xy[1] <= 0.22:
                break
        c = self.client
        marker = p.createVisualShape(p.GEOM_CYLINDER, radius=self.success_radius_m, length=0.002,
                                     rgbaColor=[0.2, 0.8, 0.2, 1], physicsClientId=c)
        p.createMultiBody(0, -1, marker, basePosition=[*self.target_pos[:2], 0.001], physicsClientId=c)
        self._make_cube(xy, size, rng.uniform(-0.25, 0.25))

    def _object_state(self) -> np.ndarray:
        pos, _ = self.cube_pose()
        return np.array([*pos, self.cube_size_m, *self.target_pos])

    def object_xy(self) -> list[np.ndarray]:
        return [*super().object_xy(), self.target_pos[:2]]

    def is_success(self) -> bool:
        pos, _ = self.cube_pose()
        return bool(np.linalg.norm(pos[:2] - self.target_pos[:2]) < self.success_radius_m)
