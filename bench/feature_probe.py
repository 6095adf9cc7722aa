"""Where the cube is, read out of a depth BC's bottleneck features: a linear probe of what the residual sees.

A residual on a learned base reads the base's frozen 256-d features (plus proprioception and the base action), so
it can only correct an error the features let it see. This bench runs the base alone through the runtime
(`policies.runtime.load_policy`, as `rrl eval`) for the first `--steps` control steps of each episode on
held-out seeds, keeps the features with the cube's true xy, fits a ridge regression features -> cube xy on the
last `--fit-fraction` of the episodes and reports its error on the first ones (the test episodes):

- `probe_rmse_cm`: root mean squared xy error of the probe on the held-out episodes (cm), next to
  `mean_rmse_cm`, the error of always answering the mean cube position (what features that say nothing give);
- `step0_error_cm`: the probe's error at step 0, where the arm is at its home pose in every episode, so the only
  thing that tells where the cube is is the depth image; split by whether the base succeeded in that episode
  when `--outcomes` gives `bench/ur5_failures.py`'s JSON of the same base on the same seeds.

On ur5_bowl the same features are also probed for the bowl's xy (`bowl`: the same three numbers), since the
residual must carry the cube there too.

The early steps are the approach: the arm has not reached the cube, so the proprioceptive part of the features
cannot stand in for the image. Prints one JSON object (the numbers, every test episode, the machine).

    .venv/bin/python bench/feature_probe.py --task ur5_bowl --base policies/pretrained/bc_ur5_bowl_depth \
        --outcomes bench/results/ur5_failures_bowl_depth43.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from machine_info import machine

RIDGE_LAMBDAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
"""Ridge penalties tried (on standardised features); the one with the lowest error on a split of the fit set wins."""


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regression on standardised `x`: (mean, scale, weights with the bias last)."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    penalty = lam * np.eye(z.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    return mean, scale, np.linalg.solve(z.T @ z + penalty, z.T @ y)


def predict(model: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    mean, scale, w = model
    return np.hstack([(x - mean) / scale, np.ones((len(x), 1))]) @ w


def choose_lambda(x: np.ndarray, y: np.ndarray, episode: np.ndarray) -> float:
    """The penalty with the lowest error on the last quarter of the fit episodes, fitted on the others."""
    cut = np.quantile(np.unique(episode), 0.75)
    inner, outer = episode <= cut, episode > cut
    errors = {lam: rmse(predict(fit_ridge(x[inner], y[inner], lam), x[outer]), y[outer]) for lam in RIDGE_LAMBDAS}
    return min(errors, key=errors.get)


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((pred - y) ** 2, axis=1))))


def main() -> int:
    from training.evaluation import EVAL_SEED_BASE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("ur5_pick", "ur5_bowl", "ur5_push"), default="ur5_pick")
    ap.add_argument("--base", required=True, help="a learned base artifact with `features` (a depth BC)")
    ap.add_argument("--episodes", type=int, default=150)
    ap.add_argument("--steps", type=int, default=20, help="control steps kept per episode (the approach)")
    ap.add_argument("--fit-fraction", type=float, default=0.67, help="share of the episodes the probe is fitted on")
    ap.add_argument("--seed", type=int, default=EVAL_SEED_BASE, help="first seed (default: the held-out seeds' first)")
    ap.add_argument("--outcomes", default=None, help="bench/ur5_failures.py JSON of this base: success per seed")
    args = ap.parse_args()
    outcomes = {}
    if args.outcomes:
        report = json.loads(open(args.outcomes).read())
        if report["base"].rstrip("/") != args.base.rstrip("/") or report["residual"] is not None:
            raise SystemExit(f"{args.outcomes} measured {report['base']} (residual {report['residual']}), "
                             f"not {args.base}")
        outcomes = {e["seed"]: e["outcome"] == "success" for e in report["per_episode"]}

    from policies.runtime import camera_for_artifacts, load_policy
    from sim_bridge import make_task

    task = make_task(args.task, camera=camera_for_artifacts(args.base, None))
    policy = load_policy(task.spec, args.base, None)
    features, cube_xy, bowl_xy, episode_of, step_of = [], [], [], [], []
    for e, seed in enumerate(range(args.seed, args.seed + args.episodes)):
        obs = task.reset(seed)
        policy.reset(seed)
        while task.step_count < args.steps:
            cube = task.cube_pose()[0][:2].copy()
            action = policy.act(obs)
            if policy.last_base is None or policy.last_base.features is None:
                raise SystemExit(f"{args.base} gives no features: the probe needs a learned base (a BC artifact)")
            features.append(policy.last_base.features.astype(np.float64))
            cube_xy.append(cube)
            if args.task == "ur5_bowl":
                bowl_xy.append(task.bowl_pos[:2].copy())
            episode_of.append(e)
            step_of.append(task.step_count)
            step = task.step(action)
            obs = step.obs
            if step.terminated or step.truncated:
                break
    task.close()
    x, y = np.array(features), np.array(cube_xy)
    episode_of, step_of = np.array(episode_of), np.array(step_of)
    n_test = args.episodes - int(round(args.fit_fraction * args.episodes))
    fit, test = episode_of >= n_test, episode_of < n_test
    at0 = test & (step_of == 0)

    def probe(y: np.ndarray) -> tuple[float, dict, np.ndarray]:
        """Fit on the fit episodes: (ridge lambda, the errors on the test episodes, the step-0 errors in cm)."""
        lam = choose_lambda(x[fit], y[fit], episode_of[fit])
        model = fit_ridge(x[fit], y[fit], lam)
        err0 = np.linalg.norm(predict(model, x[at0]) - y[at0], axis=1) * 100
        return lam, {"probe_rmse_cm": round(rmse(predict(model, x[test]), y[test]) * 100, 2),
                     "mean_rmse_cm": round(rmse(np.broadcast_to(y[fit].mean(0), y[test].shape), y[test]) * 100, 2),
                     "fit_rmse_cm": round(rmse(predict(model, x[fit]), y[fit]) * 100, 2)}, err0

    lam, errors, err0 = probe(y)
    known = [outcomes.get(args.seed + int(e)) for e in episode_of[at0]]  # None: a seed the outcomes do not cover
    won, lost = np.array([k is True for k in known]), np.array([k is False for k in known])
    bowl = None
    if bowl_xy:
        bowl_lam, bowl_errors, bowl_err0 = probe(np.array(bowl_xy))
        bowl = {"ridge_lambda": bowl_lam, **bowl_errors, "step0_error_cm": {"median": round(float(np.median(bowl_err0)), 2)}}
    print(json.dumps({
        "task": args.task, "base": args.base, "episodes": args.episodes, "seed": args.seed, "steps": args.steps,
        "fit_episodes": args.episodes - n_test, "test_episodes": n_test, "ridge_lambda": lam, **errors,
        "step0_error_cm": {"median": round(float(np.median(err0)), 2),
                           "median_of_successes": round(float(np.median(err0[won])), 2) if won.any() else None,
                           "median_of_failures": round(float(np.median(err0[lost])), 2) if lost.any() else None},
        "bowl": bowl,
        "outcomes": args.outcomes,
        "test_episodes_step0": [{"seed": args.seed + int(e), "success": outcomes.get(args.seed + int(e)),
                                 "error_cm": round(float(d), 2)} for e, d in zip(episode_of[at0], err0)],
        "machine": machine("onnxruntime", "pybullet"),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
