"""A primitive learned from scratch: REQ's `scratch` mode (no expert step, eq. 3 alone) learns on a shaped
reward; adroit_pen's shaped reward; the exported prior runs as the pen expert's `primitive` motion and acts
exactly as the same artifact does as a base through the runtime."""

import dataclasses

import numpy as np
import pytest

import sim_bridge.adroit  # noqa: F401  (sets MUJOCO_GL=egl before mujoco is first imported)
import mujoco  # noqa: E402

from controllers.experts import make_expert
from controllers.experts.adroit import pen_expert
from point_task import PointReach
from policies import experts as runtime_experts
from policies.artifact import ArtifactError
from policies.experts import PRETRAINED
from policies.runtime import ArtifactModel, ComposedPolicy, PriorPolicy, WaypointBase
from sim_bridge import make_task
from sim_bridge.adroit.tasks import PEN_DROPPED_Z_M
from training.evaluation import run_episode
from training.req.config import REQConfig, TrainConfig
from training.req.env import TaskEnv
from training.req.export import export_run
from training.req.intertwine import MODES
from training.req.train import evaluate_learner, load_run, train

FAST = REQConfig(hidden=(64, 64), batch_size=64, num_samples=20, temperature_steps=20, n_step=1,
                 learning_rate=1e-3, target_update_period=50, epsilon_mean=0.05, expert_action_improvement=False)


class ShapedPointReach(PointReach):
    """PointReach with a dense reward (minus the distance to the goal, plus 1 on reaching it) and an expert
    that points away from the goal, so that nothing can be learned from it."""

    @property
    def expert_action(self) -> np.ndarray:
        return -super().expert_action

    def step(self, action):
        out = super().step(action)
        return dataclasses.replace(out, reward=out.reward - float(np.linalg.norm(self.goal - self.pos)))


def test_scratch_mode_never_lets_the_expert_act_and_needs_eq4_off():
    assert (MODES["scratch"].lambda_intertwine, MODES["scratch"].lambda_psi) == (0.0, 0.0)
    with pytest.raises(ValueError, match="expert_action_improvement"):
        TrainConfig(task="adroit_pen", mode="scratch", learner=REQConfig())
    with pytest.raises(ValueError, match="reward must be one of"):
        TrainConfig(task="adroit_pen", reward="dense", mode="scratch", learner=FAST)


@pytest.mark.timeout(900)  # ~40 s on an idle 2-core machine
def test_scratch_run_learns_on_a_shaped_reward_without_the_expert(tmp_path):
    """From a random prior (a 6-step horizon reaches few goals) to a policy that reaches most of them; the
    replay holds no expert step, and the expert here points away from the goal. (Seed 0 reached 0.92 at 4000
    frames; with n-step 3 these runs rose to 0.34-0.40 and fell back, hence the pen config's n-step 1.)"""
    config = TrainConfig(task="point_reach", mode="scratch", frames=4000, min_replay_steps=300, updates_per_step=1.0,
                         eval_every_frames=1000, eval_episodes=50, checkpoint_every_frames=500, learner=FAST)
    summary = train(config, tmp_path, env_factory=lambda c: ShapedPointReach(), progress=False)
    _, learner, replay = load_run(tmp_path)
    assert not np.asarray(replay["data/expert_acted"]).any()
    first = summary["history"][0]["success_rate"]
    learned = evaluate_learner(PointReach(), learner, 200)["success_rate"]
    assert learned >= 0.6 and learned >= first + 0.3, f"scratch REQ {learned:.2f} (at frame 0: {first:.2f})"


def test_pen_shaped_reward_is_axis_error_and_distance_and_costs_a_drop():
    task = make_task("adroit_pen")
    env = TaskEnv(task, make_expert("adroit_pen"), reward="shaped")
    try:
        env.reset(900_000)
        step = env.step(np.zeros(env.action_dim))  # the centre posture: holds the pen
        o = task.spec.state.unpack(step.obs)
        dist = np.linalg.norm(o["pen_pos_m"] - o["target_pos_m"])
        expected = float(np.dot(o["pen_dir"], o["target_dir"])) - 1.0 - dist + float(step.success)
        assert step.reward == pytest.approx(expected, abs=1e-5) and -3.0 < step.reward <= 1.0
        lifted = task.shaped_reward()
        m, d = task.model, task.data
        vertical = [j for j in ("OBJTx", "OBJTy", "OBJTz") if abs(d.xaxis[m.joint(j).id][2]) > 0.99]  # world z slide
        d.qpos[m.jnt_qposadr[m.joint(vertical[0]).id]] -= 0.3 * np.sign(d.xaxis[m.joint(vertical[0]).id][2])
        mujoco.mj_forward(m, d)  # the pen below the hand
        assert task.data.body("Object").xpos[2] < PEN_DROPPED_Z_M
        assert task.shaped_reward() < lifted - 1.0
    finally:
        env.close()
    pick = make_task("ur5_pick")
    try:
        with pytest.raises(ValueError, match="'ur5_pick' has no shaped reward"):
            TaskEnv(pick, make_expert("ur5_pick"), reward="shaped")
    finally:
        pick.close()


@pytest.mark.timeout(600)
def test_learned_primitive_in_the_pen_expert_acts_as_its_artifact(tmp_path):
    """A short scratch run on adroit_pen, exported: the pen expert with it as its `reorient` motion and the same
    artifact as a runtime base give the same actions at every step, and the same episodes."""
    config = TrainConfig(task="adroit_pen", mode="scratch", reward="shaped", frames=300, min_replay_steps=100,
                         updates_per_step=0.5, eval_every_frames=10_000, eval_episodes=1, checkpoint_every_frames=10_000,
                         learner=REQConfig(hidden=(32, 32), batch_size=16, num_samples=8, temperature_steps=5, n_step=2,
                                           expert_action_improvement=False))
    train(config, tmp_path / "run", progress=False)
    export_run(tmp_path / "run", tmp_path / "art")
    task = make_task("adroit_pen")
    try:
        prior = PriorPolicy(ArtifactModel.load(tmp_path / "art", task.spec))
        expert = runtime_experts.make_expert("adroit_pen", "primitive", primitive=tmp_path / "art")
        obs = task.reset(1_000_000)
        expert.reset(1_000_000)
        for _ in range(8):
            a = expert.act(task.spec.state.unpack(obs["state"]))
            np.testing.assert_array_equal(a, prior.act(obs))
            assert expert.ctx.steps_in_motion > 0 and expert.sequencer.motions[0].name == "reorient"
            obs = task.step(a).obs
        as_base = [run_episode(task, ComposedPolicy(task.spec, prior), s) for s in (1_000_001, 1_000_002)]
        waypoint = ComposedPolicy(task.spec, WaypointBase(task.spec, expert=expert))
        as_expert = [run_episode(task, waypoint, s) for s in (1_000_001, 1_000_002)]
        assert [(r.success, r.steps) for r in as_base] == [(r.success, r.steps) for r in as_expert]
    finally:
        task.close()


def test_pen_expert_variants_and_a_missing_primitive_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown expert variant 'spin' for adroit_pen"):
        make_expert("adroit_pen", variant="spin")
    with pytest.raises(ValueError, match="runs a learned primitive"):
        pen_expert("primitive")  # controllers run no network: the primitive comes from policies.experts
    with pytest.raises(ValueError, match="no policy artifact there"):
        runtime_experts.make_expert("adroit_pen", "primitive", primitive=tmp_path / "nothing")
    with pytest.raises(ArtifactError, match="needs a req_prior or crr_prior artifact of adroit_pen"):
        runtime_experts.make_expert("adroit_pen", "primitive", primitive=PRETRAINED / "bc_adroit_door_state")
    assert runtime_experts.LEARNED_PRIMITIVES[("adroit_pen", "primitive")] == PRETRAINED / "req_adroit_pen_primitive"
