"""Episode videos: a third-person view of any task, an overlay, H.264 files, side-by-side clips.

`RecordingTask(task, path, VideoConfig(...))` wraps a `Task` and writes the first
`VideoConfig.episodes` episodes it plays to one MP4 file (H.264, yuv420p, through imageio's
bundled ffmpeg): one frame after `reset` and one after every `step`, so an episode of T steps
gives T + 1 frames. `rrl eval --video` and the sim_bridge node (`video` parameter) wrap their task
with it; everything that drives a `Task` (`training.evaluation.evaluate`, the node's
`EpisodeRunner`) runs unchanged.

The view is a fixed camera looking at the scene, never the policy's camera input:
- UR5 (PyBullet): `p.getCameraImage` with the TinyRenderer from `UR5_VIEW` (behind and beside
  the table, the arm and the workspace in frame). It draws no random numbers (the tasks draw from
  their own seeded numpy generators) and does not step the physics.
- Adroit (MuJoCo): the model's own `fixed` camera through a second offscreen renderer
  (`sim_bridge.adroit.tasks.make_renderer`; the policy's `vil_camera` renderer is left alone).
  `mujoco.Renderer.update_scene` reads `MjData` and writes only the visual scene.
So a recorded episode is the episode that would have run without a video: the same actions, the
same outcome (tests/rrl/test_video.py compares them step by step).

The overlay is an info strip under the view (so it hides nothing of the scene): task, seed,
step / horizon and the outcome so far (running, success, failed at the horizon), then the command
applied at the last step (the task-clipped action, per field; a field wider than 3 by its norm).

Shapes: frames are uint8 (H, W, 3), H and W multiples of 16 (H.264 macroblocks: no rescaling);
with the strip H = height_px + 32 (`VideoConfig.frame_shape`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

from sim_bridge.spec import Layout, TaskSpec
from sim_bridge.task import CameraConfig, Observation, Step, Task

MACRO_BLOCK_PX = 16
"""H.264 encodes 16 x 16 macroblocks: frame sides must be multiples of this (else imageio rescales)."""
INFO_STRIP_PX = 32
"""Height of the info strip under each view (a multiple of 16, so frames stay whole macroblocks)."""
FIELD_UNITS = {"tool_vel": "m/s"}
"""Units shown after an action field in the overlay (fields not listed are shown bare)."""


@dataclass(frozen=True)
class VideoConfig:
    """How an episode video is recorded."""

    width_px: int = 320
    """Frame width in pixels (a multiple of 16)."""
    height_px: int = 240
    """Frame height in pixels (a multiple of 16)."""
    fps: float = 10.0
    """Playback frame rate; the control rate (10 Hz) plays the episode in real time."""
    episodes: int = 1
    """Record the first this many episodes the task plays (later ones run without rendering)."""
    overlay: bool = True
    """Add the info strip (seed, step, outcome, command) below each view; frames are then 32 px taller."""

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of the frames written: the view plus the info strip."""
        return (self.height_px + (INFO_STRIP_PX if self.overlay else 0), self.width_px, 3)

    def __post_init__(self) -> None:
        for name in ("width_px", "height_px"):
            value = getattr(self, name)
            if value < MACRO_BLOCK_PX or value % MACRO_BLOCK_PX:
                raise ValueError(f"video {name} must be a positive multiple of {MACRO_BLOCK_PX} (H.264 macroblocks), "
                                 f"got {value}")
        if not self.fps > 0:
            raise ValueError(f"video fps must be > 0, got {self.fps}")
        if self.episodes < 1:
            raise ValueError(f"video episodes must be >= 1, got {self.episodes}")


def check_video_path(path: str | Path) -> Path:
    """`path` as a Path if it names an .mp4 file whose directory exists or can be made; else ValueError."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"video file {str(path)!r} must end in .mp4 (H.264 in an MP4 container)")
    if path.is_dir():
        raise ValueError(f"video file {str(path)!r} is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the directory of the video file {str(path)!r}: {e.strerror or e}") from None
    return path


# --- views: a fixed third-person camera per simulator -------------------------------------------

class View(Protocol):
    def render(self) -> np.ndarray:
        """One RGB frame, uint8 (H, W, 3)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class PyBulletView:
    """A fixed camera pose and lens for PyBullet scenes (robot base frame, metres)."""

    eye_m: tuple[float, float, float]
    target_m: tuple[float, float, float]
    fov_deg: float = 45.0
    near_m: float = 0.05
    far_m: float = 5.0
    light_direction: tuple[float, float, float] = (0.5, 1.0, 2.0)


UR5_VIEW = PyBulletView(eye_m=(1.25, 0.5, 0.7), target_m=(0.4, 0.0, 0.2))
"""In front of the robot and to its left, above the table: the arm, the gripper and the workspace box in frame
(the policy's depth camera sits at (1.0, 0, 0.7) looking straight along -x)."""
ADROIT_VIEW_CAMERA = "fixed"
"""The Adroit models' own fixed scene camera (the policy's RGB input is `vil_camera`)."""


class UR5View:
    """`UR5_VIEW` of a UR5 task's PyBullet client, TinyRenderer with shadows."""

    def __init__(self, task: Task, width_px: int, height_px: int, pose: PyBulletView = UR5_VIEW):
        import pybullet as p

        self._p, self._client = p, task.client
        self._size = (width_px, height_px)
        self._light = list(pose.light_direction)
        self._view = p.computeViewMatrix(list(pose.eye_m), list(pose.target_m), [0, 0, 1])
        self._proj = p.computeProjectionMatrixFOV(pose.fov_deg, width_px / height_px, pose.near_m, pose.far_m)

    def render(self) -> np.ndarray:
        p, (w, h) = self._p, self._size
        _, _, rgba, _, _ = p.getCameraImage(w, h, self._view, self._proj, renderer=p.ER_TINY_RENDERER,
                                            flags=p.ER_NO_SEGMENTATION_MASK, lightDirection=self._light, shadow=1,
                                            physicsClientId=self._client)
        return np.asarray(rgba, np.uint8).reshape(h, w, 4)[:, :, :3].copy()

    def close(self) -> None:
        pass


class AdroitView:
    """The Adroit model's `fixed` camera through an offscreen renderer of its own."""

    def __init__(self, task: Task, width_px: int, height_px: int, camera: str = ADROIT_VIEW_CAMERA):
        from sim_bridge.adroit.tasks import make_renderer

        self._data = task.data
        self._camera = task.model.camera(camera).id
        # the task's own render quality: make_renderer writes it into model.vis, which the task's renderer reads too
        self._renderer = make_renderer(task.model, CameraConfig(width_px, height_px), task.render_quality)

    def render(self) -> np.ndarray:
        self._renderer.update_scene(self._data, camera=self._camera)
        return self._renderer.render().copy()

    def close(self) -> None:
        self._renderer.close()


VIEWS = {"ur5": UR5View, "adroit": AdroitView}
"""`TaskSpec.robot` -> the view class that renders its tasks."""


def make_view(task: Task, width_px: int, height_px: int) -> View:
    """The third-person view of `task` (by its robot), or ValueError for a robot without one."""
    robot = task.spec.robot
    if robot not in VIEWS:
        raise ValueError(f"no video view for robot {robot!r} (task {task.spec.name}); known: {sorted(VIEWS)}")
    return VIEWS[robot](task, width_px, height_px)


# --- overlay --------------------------------------------------------------------------------------

WHITE, GREEN, RED = (255, 255, 255), (90, 230, 90), (255, 90, 90)


def command_text(layout: Layout, action: np.ndarray | None) -> str:
    """'cmd tool_vel +0.012 -0.034 +0.100 m/s, gripper 1' (fields wider than 3 by their norm), or 'cmd -'."""
    if action is None:
        return "cmd -"
    parts = []
    for name, value in layout.unpack(np.asarray(action, np.float64)).items():
        value = np.atleast_1d(value)
        unit = f" {FIELD_UNITS[name]}" if name in FIELD_UNITS else ""
        if value.size == 1 and float(value[0]).is_integer():
            text = f"{int(value[0])}"
        elif value.size <= 3:
            text = " ".join(f"{x:+.3f}" for x in value)
        else:
            text = f"|{np.linalg.norm(value):.2f}|"
        parts.append(f"{name} {text}{unit}")
    return "cmd " + ", ".join(parts)


def status_lines(spec: TaskSpec, seed: int, step: int, outcome: str, action: np.ndarray | None) -> list[tuple[str, tuple]]:
    """The info strip's two lines (text, colour) for one frame; `outcome` is running, success or failed
    (the first line takes the outcome's colour: white, green, red)."""
    colour = {"success": GREEN, "failed": RED}.get(outcome, WHITE)
    outcome = outcome if outcome != "failed" else "failed (horizon)"
    return [(f"{spec.name}  seed {seed}  step {step}/{spec.max_steps}  {outcome}", colour),
            (command_text(spec.action, action), WHITE)]


def _font(size_px: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size_px)


def draw_text(frame: np.ndarray, lines: Iterable[tuple[str, tuple]], origin: tuple[int, int], size_px: int) -> np.ndarray:
    """`frame` (H, W, 3) uint8 with `lines` (text, rgb) drawn one under the other from `origin` (x, y px)."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    font = _font(size_px)
    x, y = origin
    for i, (text, colour) in enumerate(lines):
        draw.text((x, y + i * (size_px + 3)), text, font=font, fill=tuple(colour))
    return np.asarray(image)


def with_info_strip(frame: np.ndarray, lines: list[tuple[str, tuple]], strip_px: int) -> np.ndarray:
    """`frame` with a black strip of `strip_px` rows below it carrying `lines` (nothing of the view is covered)."""
    strip = np.zeros((strip_px, frame.shape[1], 3), np.uint8)
    size_px = max(8, (strip_px - 6) // len(lines) - 3)
    return np.vstack([frame, draw_text(strip, lines, origin=(4, 3), size_px=size_px)])


# --- writing and reading ---------------------------------------------------------------------------

def open_writer(path: str | Path, fps: float):
    """An imageio H.264 writer (`append_data(frame)`, `close()`); frames (H, W, 3) uint8, sides multiples of 16."""
    import imageio.v2 as iio

    return iio.get_writer(str(path), format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
                          quality=None, output_params=["-preset", "veryfast", "-crf", "23"],
                          macro_block_size=MACRO_BLOCK_PX, ffmpeg_log_level="error")


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write `frames` to `path` (H.264 MP4); returns the number of frames written."""
    writer = open_writer(check_video_path(path), fps)
    n = 0
    try:
        for frame in frames:
            writer.append_data(np.asarray(frame, np.uint8))
            n += 1
    finally:
        writer.close()
    return n


def read_video(path: str | Path) -> list[np.ndarray]:
    """Every frame of a video file, decoded (uint8 (H, W, 3) each)."""
    import imageio.v2 as iio

    reader = iio.get_reader(str(path), format="FFMPEG")
    try:
        return [np.asarray(frame) for frame in reader]
    finally:
        reader.close()


def side_by_side(left: list[np.ndarray], right: list[np.ndarray], titles: tuple[str, str],
                 title_px: int = 32, tail_frames: int = 0) -> list[np.ndarray]:
    """Frames of `left` and `right` next to each other under a title strip each.

    The shorter clip holds its last frame until the longer one ends, then both hold for `tail_frames`.
    Both clips must have the same frame height; `title_px` should keep the height a multiple of 16.
    """
    if not left or not right:
        raise ValueError(f"side_by_side needs frames on both sides, got {len(left)} and {len(right)}")
    if left[0].shape[0] != right[0].shape[0]:
        raise ValueError(f"clips of different heights: {left[0].shape[0]} and {right[0].shape[0]} px")
    n = max(len(left), len(right)) + tail_frames
    strips = []
    for clip, title in ((left, titles[0]), (right, titles[1])):
        strip = np.zeros((title_px, clip[0].shape[1], 3), np.uint8)
        strips.append(draw_text(strip, [(title, WHITE)], origin=(6, (title_px - 16) // 2), size_px=14))
    out = []
    for i in range(n):
        halves = [np.vstack([strip, clip[min(i, len(clip) - 1)]]) for strip, clip in zip(strips, (left, right))]
        halves[1][:, :2] = 255  # a thin white line between the two halves
        out.append(np.hstack(halves))
    return out


# --- the recording wrapper --------------------------------------------------------------------------

class RecordingTask(Task):
    """A `Task` that records its first `config.episodes` episodes to `path`, without changing them.

    `close()` finishes the file and closes the wrapped task; the file is also finished as soon as the
    last recorded episode ends, so a process stopped later keeps a complete video. Attributes the
    wrapper does not define (e.g. `client`, `place_cube`) are the wrapped task's.
    """

    def __init__(self, task: Task, path: str | Path, config: VideoConfig = VideoConfig()):
        self.task = task
        self.spec = task.spec
        self.path = check_video_path(path)
        self.config = config
        self._view = make_view(task, config.width_px, config.height_px)
        self._writer = None
        self._recording = False
        self._seed = 0
        self.episodes_recorded = 0
        """Episodes recorded so far (an episode cut short by a reset counts)."""
        self.frames_written = 0

    def __getattr__(self, name: str) -> Any:
        if name == "task":  # not set yet (during __init__): no recursion
            raise AttributeError(name)
        return getattr(self.task, name)

    @property
    def step_count(self) -> int:
        return self.task.step_count

    def reset(self, seed: int) -> Observation:
        obs = self.task.reset(seed)
        if self._recording:  # the previous episode was cut short
            self._end_episode()
        self._recording = self.episodes_recorded < self.config.episodes
        if self._recording:
            self._seed = int(seed)
            self._write("running", None)
        return obs

    def step(self, action: np.ndarray) -> Step:
        out = self.task.step(action)
        if self._recording:
            outcome = "success" if out.success else "failed" if out.truncated else "running"
            self._write(outcome, self.spec.clip_action(action))
            if out.terminated or out.truncated:
                self._end_episode()
        return out

    def close(self) -> None:
        self._close_writer()
        if self._view is not None:
            self._view.close()
            self._view = None
        self.task.close()

    def _write(self, outcome: str, action: np.ndarray | None) -> None:
        frame = self._view.render()
        if self.config.overlay:
            frame = with_info_strip(frame, status_lines(self.spec, self._seed, self.task.step_count, outcome, action),
                                    INFO_STRIP_PX)
        if self._writer is None:
            self._writer = open_writer(self.path, self.config.fps)
        self._writer.append_data(frame)
        self.frames_written += 1

    def _end_episode(self) -> None:
        self._recording = False
        self.episodes_recorded += 1
        if self.episodes_recorded >= self.config.episodes:
            self._close_writer()

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
