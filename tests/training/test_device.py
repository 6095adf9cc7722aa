"""`--device`: resolving it, moving batches, CPU checkpoints and CPU actors of the DMPO and REQ learners.

No GPU here: the CUDA branches of `resolve_device` are exercised with an explicit device count, and
"computes on a non-CPU device" is checked on torch's `meta` device, which (like CUDA) refuses any
CPU tensor but a 0-dim scalar in its operations. The CPU path is pinned by golden checksums
recorded with the learners as they were before they took a device.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from training.bc.network import BCNet, ExportWrapper
from training.device import (
    DeviceError, cpu_state_dict, describe, floats, generator_state, load_generator_state, resolve_device, to_device,
)
from training.dmpo import losses as dmpo_losses
from training.dmpo.learner import Batch as DMPOBatch
from training.dmpo.learner import DMPOConfig, DMPOLearner
from training.dmpo.networks import CategoricalCritic, GaussianPolicy
from training.req import losses as req_losses
from training.req.learner import Batch as REQBatch
from training.req.learner import REQActor, REQConfig, REQLearner
from training.req.networks import GaussianPrior, QNetwork

OBS, ACT, B = 5, 3, 32

# -- resolve_device / describe ------------------------------------------------------------------------


@pytest.mark.parametrize("text, count, expected", [
    ("auto", 0, "cpu"), ("auto", 2, "cuda:0"), ("cpu", 0, "cpu"), ("cpu", 1, "cpu"), (" CPU ", 0, "cpu"),
    ("cuda", 1, "cuda:0"), ("cuda:0", 1, "cuda:0"), ("cuda:1", 2, "cuda:1"), ("CUDA:1", 2, "cuda:1"),
])
def test_resolve_device(text, count, expected):
    assert resolve_device(text, cuda_count=count) == torch.device(expected)


def test_auto_on_this_machine_is_what_torch_sees():
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("text", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_says_so_and_what_to_use(text):
    if torch.version.cuda is None:
        expected = f"--device {text}: torch {torch.__version__} has no CUDA; use --device cpu or auto"
    else:
        expected = (f"--device {text}: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device "
                    "(no driver, or CUDA_VISIBLE_DEVICES hides them); use --device cpu or auto")
    with pytest.raises(DeviceError) as info:
        resolve_device(text)
    assert str(info.value) == expected


def test_cuda_without_cuda_from_the_torch_build():
    with pytest.raises(DeviceError, match="has no CUDA; use --device cpu or auto|sees no CUDA device"):
        resolve_device("cuda", cuda_count=0)


@pytest.mark.parametrize("text, count, expected", [
    ("cuda:1", 1, "--device cuda:1: this machine has 1 CUDA device (cuda:0); use one of them, cpu or auto"),
    ("cuda:2", 2, "--device cuda:2: this machine has 2 CUDA devices (cuda:0 .. cuda:1); use one of them, cpu or auto"),
])
def test_cuda_index_beyond_the_devices(text, count, expected):
    with pytest.raises(DeviceError) as info:
        resolve_device(text, cuda_count=count)
    assert str(info.value) == expected


@pytest.mark.parametrize("text", ["gpu", "cuda:-1", "cuda:x", "cuda0", "", "mps", "cpu:0", "cuda:1:2"])
def test_unknown_device_names_the_value_and_the_choices(text):
    with pytest.raises(DeviceError) as info:
        resolve_device(text, cuda_count=2)
    assert str(info.value) == f"--device {text!r}: expected one of auto, cpu, cuda, cuda:N"
    assert isinstance(info.value, ValueError)


def test_describe_cpu():
    assert describe(torch.device("cpu")) == "cpu" and describe("cpu") == "cpu"


# -- to_device / cpu_state_dict / floats / generator states -------------------------------------------


def test_to_device_keeps_tensors_already_there_and_none_fields():
    batch = REQBatch(*(torch.randn(4, 2) for _ in range(5)), expert_action=None)
    moved = to_device(batch, torch.device("cpu"))
    assert moved.obs is batch.obs and moved.expert_action is None  # the CPU path copies nothing
    meta = to_device(batch, torch.device("meta"))
    assert all(getattr(meta, f).device.type == "meta" for f in ("obs", "action", "reward", "discount", "next_obs"))
    assert batch.obs.device.type == "cpu"  # the original is left as it was
    assert to_device({"a": batch.obs}, torch.device("meta"))["a"].device.type == "meta"


def test_cpu_state_dict_copies_every_tensor_and_keeps_the_rest():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(8, 3)).sum().backward()
    opt.step()
    state = cpu_state_dict({"net": net, "opt": opt.state_dict(), "steps": 7, "pair": (torch.ones(2), "x")})
    weight = net[0].weight
    assert torch.equal(state["net"]["0.weight"], weight) and state["net"]["0.weight"].data_ptr() != weight.data_ptr()
    assert not state["net"]["0.weight"].requires_grad
    assert isinstance(state["net"], OrderedDict) and state["net"]._metadata == net.state_dict()._metadata
    exp_avg = opt.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(state["opt"]["state"][0]["exp_avg"], exp_avg)
    assert state["opt"]["state"][0]["exp_avg"].data_ptr() != exp_avg.data_ptr()
    assert state["opt"]["param_groups"] == opt.state_dict()["param_groups"]
    assert state["steps"] == 7 and state["pair"][1] == "x" and torch.equal(state["pair"][0], torch.ones(2))
    with torch.no_grad():
        weight.add_(1.0)
    assert not torch.equal(state["net"]["0.weight"], weight)  # a snapshot: later updates do not reach it
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    fresh.load_state_dict(state["net"])  # loadable as a module state


def test_floats_are_the_values_of_float_in_one_transfer():
    a, b = torch.tensor(1 / 3), torch.tensor(2 / 3, dtype=torch.float64)
    stats = dmpo_losses.CriticStats(a, a * 2, a * 3)
    out = floats(stats, {"b": b, "n": 0.25})
    assert out == {"critic_loss": float(a), "q_mean": float(a * 2), "target_q_mean": float(a * 3), "b": float(b), "n": 0.25}
    assert all(type(v) is float for v in out.values())
    assert floats() == {}


def test_generator_state_round_trips_and_crosses_device_kinds_deterministically():
    g = torch.Generator().manual_seed(5)
    torch.randn(3, generator=g)
    saved = generator_state(g)
    expected = torch.randn(4, generator=g)
    h = torch.Generator()
    load_generator_state(h, saved)
    assert torch.equal(torch.randn(4, generator=h), expected)
    load_generator_state(h, saved["state"])  # older checkpoints: a bare CPU state
    assert torch.equal(torch.randn(4, generator=h), expected)
    # a CUDA generator's state cannot seed a CPU generator (nor the reverse): reseeded from its bytes
    foreign = {"state": torch.arange(16, dtype=torch.uint8), "device": "cuda"}
    draws = []
    for _ in range(2):
        load_generator_state(h, foreign)
        draws.append(torch.randn(4, generator=h))
    assert torch.equal(draws[0], draws[1])
    load_generator_state(h, {"state": torch.arange(1, 17, dtype=torch.uint8), "device": "cuda"})
    assert not torch.equal(torch.randn(4, generator=h), draws[0])


# -- networks and losses compute wherever their inputs are -----------------------------------------------


def test_networks_and_losses_compute_on_a_non_cpu_device():
    """On `meta`, any CPU tensor the code makes (other than a 0-dim scalar) is an error, as on CUDA."""
    m = torch.device("meta")
    z = lambda *shape: torch.randn(*shape, device=m)  # noqa: E731
    n, a = 5, 51
    outputs = [
        *dmpo_losses.categorical_td_loss(z(B, a), z(B), z(B), z(B, a), torch.linspace(0, 1, a, device=m)),
        *dmpo_losses.mpo_policy_loss(z(B, ACT), z(B, ACT), z(B, ACT), z(B, ACT), z(n, B, ACT), z(n, B), z(1), z(ACT),
                                     z(ACT), 0.1, 2.5e-3, 1e-6),
        *req_losses.solve_temperature(z(B, n), 0.75, 5),
        *req_losses.prior_improvement_loss(z(B, ACT), z(B, ACT), z(B, ACT), z(B, ACT), z(B, ACT), z(B), z(B, ACT), z(B),
                                           z(()), z(()), 0.01, 1e-5),
        *req_losses.prior_improvement_loss(z(B, ACT), z(B, ACT), z(B, ACT), z(B, ACT), z(B, ACT), z(B), None, None,
                                           z(()), z(()), 0.01, 1e-5),
        *GaussianPolicy(OBS, ACT, (8, 8)).to(m)(z(B, OBS)),
        CategoricalCritic(OBS, ACT, (8, 8)).to(m)(z(n, B, OBS), z(n, B, ACT)),
        CategoricalCritic(OBS, ACT, (8, 8)).to(m).expected_value(z(B, a)),
        *GaussianPrior(OBS, ACT, (8, 8), 0.3, 1e-5).to(m)(z(B, OBS)),
        QNetwork(OBS, ACT, (8, 8)).to(m)(z(B, n, OBS), z(B, n, ACT)),
        *BCNet(ACT, image_channels=3, scalar_dim=4).to(m)(z(2, 3, 32, 32), z(2, 4)),
        *ExportWrapper(BCNet(ACT, scalar_dim=OBS), torch.tensor([True, False, False])).to(m)(z(2, OBS)),
    ]
    tensors = [t for out in outputs for t in ([out] if isinstance(out, torch.Tensor) else vars(out).values())]
    assert tensors and all(t.device == m for t in tensors)


# -- the DMPO learner -------------------------------------------------------------------------------------

DMPO_GOLDEN = {
    "policy": 57.50467139113971, "critic": 149.3993761952006, "targets": 207.18378873283382,
    "duals": 3039.8176040649414, "stats": 1024.885392476649,
}
REQ_GOLDEN = {
    "prior": 52.83861652959786, "q": 63.962429618091846, "targets": 116.799748529711,
    "duals": 1.9020483493804932, "stats": 10.531357684907674, "actions": -0.7655414971522987,
}
GOLDEN_REL = 1e-7
"""Tolerance of the golden sums: the thread count alone moves them by ~1e-10 (relative); a changed
noise draw, order of operations or dtype moves them by 1e-5 or more."""


def _total(tensors) -> float:
    return sum(float(t.detach().double().sum()) for t in tensors)


def dmpo_learner(**kw) -> DMPOLearner:
    cfg = DMPOConfig(policy_hidden=(64, 64), critic_hidden=(128, 128), target_update_period=2)
    torch.manual_seed(0)
    policy = GaussianPolicy(OBS, ACT, cfg.policy_hidden, init_std=cfg.init_std)
    critic = CategoricalCritic(OBS, ACT, cfg.critic_hidden, cfg.num_atoms, cfg.v_min, cfg.v_max)
    learner = DMPOLearner(policy, critic, ACT, cfg, seed=3, **kw)
    for net in (learner.policy, learner.critic, learner.target_policy, learner.target_critic):
        net.normalizer.set(torch.linspace(-0.5, 0.5, OBS), torch.linspace(0.5, 1.5, OBS))
    return learner


def dmpo_batches(k: int, seed: int = 1) -> list[DMPOBatch]:
    g = torch.Generator().manual_seed(seed)
    return [DMPOBatch(torch.randn(B, OBS, generator=g), torch.randn(B, ACT, generator=g), (torch.rand(B, generator=g) > 0.5).float(),
                      0.95 * (torch.rand(B, generator=g) > 0.1).float(), torch.randn(B, OBS, generator=g)) for _ in range(k)]


def dmpo_checksums(learner: DMPOLearner) -> dict[str, float]:
    stats = {}
    for batch in dmpo_batches(5):
        stats = learner.update(batch)
    return {"policy": _total(learner.policy.parameters()), "critic": _total(learner.critic.parameters()),
            "targets": _total([*learner.target_policy.parameters(), *learner.target_critic.parameters()]),
            "duals": _total([learner.log_temperature, learner.log_alpha_mean, learner.log_alpha_std]),
            "stats": sum(stats.values())}


def dmpo_tensors(learner: DMPOLearner) -> list[torch.Tensor]:
    return [*learner.policy.state_dict().values(), *learner.critic.state_dict().values(),
            *learner.target_policy.state_dict().values(), *learner.target_critic.state_dict().values(),
            learner.log_temperature, learner.log_alpha_mean, learner.log_alpha_std]


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_dmpo_cpu_numerics_are_those_before_the_device_change():
    """Golden sums after 5 updates; regenerate (only for an intended change of the numerics) with
    `PYTHONPATH=. .venv/bin/python tests/training/test_device.py`."""
    assert dmpo_checksums(dmpo_learner()) == pytest.approx(DMPO_GOLDEN, rel=GOLDEN_REL)


def test_dmpo_explicit_cpu_is_the_default():
    default, explicit = dmpo_learner(), dmpo_learner(device="cpu")
    assert explicit.device == torch.device("cpu") and explicit.generator.device.type == "cpu"
    for batch in dmpo_batches(4):
        assert default.update(batch) == explicit.update(batch)
    assert_same(dmpo_tensors(default), dmpo_tensors(explicit))


def test_dmpo_stats_are_floats():
    stats = dmpo_learner().update(dmpo_batches(1)[0])
    assert len(stats) == 16 and all(type(v) is float for v in stats.values())


def test_dmpo_state_dict_is_cpu_and_resumes_identically(tmp_path):
    learner = dmpo_learner()
    batches = dmpo_batches(6)
    for batch in batches[:3]:
        learner.update(batch)
    state = learner.state_dict()
    flat = _tensors_in(state)
    assert flat and all(t.device.type == "cpu" for t in flat)
    assert all(t.data_ptr() != live.data_ptr() for t, live in zip(flat, _tensors_in(learner.policy.state_dict())))
    torch.save(state, tmp_path / "learner.pt")
    resumed = dmpo_learner()
    resumed.load_state_dict(torch.load(tmp_path / "learner.pt", weights_only=False))
    assert resumed.steps == learner.steps
    for batch in batches[3:]:
        assert learner.update(batch) == resumed.update(batch)
    assert_same(dmpo_tensors(learner), dmpo_tensors(resumed))


def test_dmpo_resumes_a_checkpoint_of_the_previous_format():
    """Before the device change `generator` was the bare CPU generator state."""
    learner = dmpo_learner()
    learner.update(dmpo_batches(1)[0])
    state = learner.state_dict()
    state["generator"] = state["generator"]["state"]
    resumed = dmpo_learner()
    resumed.load_state_dict(state)
    batch = dmpo_batches(1, seed=9)[0]
    assert learner.update(batch) == resumed.update(batch)


def test_dmpo_cpu_policy_acts_as_the_learner_and_takes_new_weights():
    learner = dmpo_learner()
    policy = pickle.loads(pickle.dumps(learner.cpu_policy()))  # as shipped to a rollout worker
    obs = torch.randn(7, OBS)
    assert all(p.device.type == "cpu" and not p.requires_grad for p in policy.parameters())
    for batch in dmpo_batches(3):
        learner.update(batch)
    with torch.no_grad():
        assert not torch.equal(policy(obs)[0], learner.policy(obs)[0])
        weights = learner.actor_state_dict()
        assert all(t.device.type == "cpu" for t in weights.values())
        policy.load_state_dict(weights)
        assert_same(list(policy(obs)), list(learner.policy(obs)))
    assert set(weights) == set(learner.policy.state_dict())


# -- the REQ learner --------------------------------------------------------------------------------------


def req_config() -> REQConfig:
    return REQConfig(hidden=(64, 64), num_samples=16, temperature_steps=10, target_update_period=2, batch_size=B)


def req_learner(**kw) -> REQLearner:
    learner = REQLearner(OBS, ACT, req_config(), seed=3, **kw)
    learner.fit_normalizers(torch.randn(100, OBS, generator=torch.Generator().manual_seed(1)).numpy() * 2 + 1)
    return learner


def req_batches(k: int, seed: int = 1) -> list[REQBatch]:
    g = torch.Generator().manual_seed(seed)
    torch.randn(100, OBS, generator=g)  # the draws of the normalizer data (as the golden run made them)
    return [REQBatch(torch.randn(B, OBS, generator=g), torch.rand(B, ACT, generator=g) * 2 - 1, (torch.rand(B, generator=g) > 0.5).float(),
                     0.99 * (torch.rand(B, generator=g) > 0.1).float(), torch.randn(B, OBS, generator=g),
                     torch.rand(B, ACT, generator=g) * 2 - 1) for _ in range(k)]


def req_checksums(learner: REQLearner) -> dict[str, float]:
    stats = {}
    for batch in req_batches(5):
        stats = learner.update(batch)
    obs = np.linspace(-1, 1, OBS, dtype=np.float32)
    actions = [learner.act(obs, explore=e, acting=a) for a in ("prior", "importance") for e in (True, False)]
    return {"prior": _total(learner.prior.parameters()), "q": _total(learner.q.parameters()),
            "targets": _total([*learner.target_prior.parameters(), *learner.target_q.parameters()]),
            "duals": _total([learner.log_alpha_mean, learner.log_alpha_cov]), "stats": sum(stats.values()),
            "actions": float(sum(a.astype(np.float64).sum() for a in actions))}


def req_tensors(learner: REQLearner) -> list[torch.Tensor]:
    return [*learner.prior.state_dict().values(), *learner.q.state_dict().values(),
            *learner.target_prior.state_dict().values(), *learner.target_q.state_dict().values(),
            learner.log_alpha_mean, learner.log_alpha_cov]


def test_req_cpu_numerics_are_those_before_the_device_change():
    """Golden sums after 5 updates and 4 actions; regenerate (only for an intended change of the
    numerics) with `PYTHONPATH=. .venv/bin/python tests/training/test_device.py`."""
    assert req_checksums(req_learner()) == pytest.approx(REQ_GOLDEN, rel=GOLDEN_REL)


def test_req_explicit_cpu_is_the_default():
    default, explicit = req_learner(), req_learner(device="cpu")
    assert explicit.device == torch.device("cpu") and explicit.generator.device.type == "cpu"
    for batch in req_batches(4):
        assert default.update(batch) == explicit.update(batch)
    assert_same(req_tensors(default), req_tensors(explicit))
    obs = np.zeros(OBS, np.float32)
    assert np.array_equal(default.act(obs, explore=True), explicit.act(obs, explore=True))


def test_req_stats_are_floats():
    stats = req_learner().update(req_batches(1)[0])
    assert "temperature_eta_mean" in stats and all(type(v) is float for v in stats.values())


def test_req_state_dict_is_cpu_and_resumes_identically(tmp_path):
    learner = req_learner()
    batches = req_batches(6)
    for batch in batches[:3]:
        learner.update(batch)
    state = learner.state_dict()
    assert all(t.device.type == "cpu" for t in _tensors_in(state))
    torch.save(state, tmp_path / "learner.pt")
    resumed = REQLearner(OBS, ACT, req_config(), seed=99)
    resumed.load_state_dict(torch.load(tmp_path / "learner.pt", weights_only=False))
    for batch in batches[3:]:
        assert learner.update(batch) == resumed.update(batch)
    assert_same(req_tensors(learner), req_tensors(resumed))
    obs = np.zeros(OBS, np.float32)
    assert np.array_equal(learner.act(obs, explore=True, acting="importance"), resumed.act(obs, explore=True, acting="importance"))


@pytest.mark.parametrize("acting", ["prior", "importance"])
def test_req_cpu_actor_acts_as_the_learner_and_takes_new_weights(acting):
    learner = req_learner()
    rng_before = torch.get_rng_state()
    actor = pickle.loads(pickle.dumps(learner.cpu_actor(seed=4)))  # as shipped to a rollout worker
    assert torch.equal(torch.get_rng_state(), rng_before)  # building it drew nothing from the global stream
    assert all(p.device.type == "cpu" for p in (*actor.prior.parameters(), *actor.q.parameters()))
    obs = np.linspace(-1, 1, OBS, dtype=np.float32)

    def same_actions() -> bool:  # the learner's networks with a generator in the actor's state
        own = REQActor(learner.prior, learner.q, learner.config, torch.Generator().manual_seed(4))
        actor.generator.manual_seed(4)
        return all(np.array_equal(actor.act(obs, explore=e, acting=acting), own.act(obs, explore=e, acting=acting))
                   for e in (False, True, True))

    assert same_actions()
    for batch in req_batches(3):
        learner.update(batch)
    assert not same_actions()
    weights = learner.actor_state_dict()
    assert set(weights) == {"prior", "q"} and all(t.device.type == "cpu" for t in _tensors_in(weights))
    actor.load_state_dict(weights)
    assert same_actions()
    # a worker builds its actor from the weights alone; the same seed gives the same exploration
    a = REQActor.from_state_dict(OBS, ACT, req_config(), weights, seed=4)
    b = REQActor.from_state_dict(OBS, ACT, req_config(), copy.deepcopy(weights), seed=4)
    assert np.array_equal(a.act(obs, explore=True, acting=acting), b.act(obs, explore=True, acting=acting))


class FactoryWatch(TorchFunctionMode):
    """Records tensor factories called without `device=` that make more than a 0-dim scalar.

    On CUDA such a tensor lands on the CPU and the next operation with device tensors fails (a
    0-dim CPU tensor is allowed there, as a scalar), so the learners must name the device."""

    FACTORIES = {torch.randn, torch.rand, torch.randint, torch.randperm, torch.normal, torch.zeros, torch.ones,
                 torch.full, torch.empty, torch.eye, torch.arange, torch.linspace, torch.tensor, torch.as_tensor}

    def __init__(self):
        super().__init__()
        self.without_device: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in self.FACTORIES and "device" not in kwargs and isinstance(out, torch.Tensor) and out.dim() > 0:
            self.without_device.append(func.__name__)
        return out


def test_updates_and_acting_make_every_tensor_on_the_learners_device():
    dmpo, req = dmpo_learner(), req_learner()
    dmpo_batch, req_batch = dmpo_batches(1)[0], req_batches(1)[0]
    obs = np.zeros(OBS, np.float32)
    with FactoryWatch() as watch:
        dmpo.update(dmpo_batch)
        req.update(req_batch)
        for acting in ("prior", "importance"):
            for explore in (True, False):
                req.act(obs, explore, acting)
    assert watch.without_device == []


def _tensors_in(state) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in _tensors_in(v)]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in _tensors_in(v)]
    return []


if __name__ == "__main__":  # the golden sums of this code (single-threaded)
    torch.set_num_threads(1)
    print(json.dumps({"dmpo": dmpo_checksums(dmpo_learner()), "req": req_checksums(req_learner())}, indent=1))
