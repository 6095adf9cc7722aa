"""The DMPO learner: one `update(batch) -> stats` per gradient step on a given batch.

Distributional MPO as in Acme's `acme/agents/tf/dmpo/learning.py` (the
implementation RRLfD used with its defaults, lr changed to 3.3e-4):

1. every `target_update_period` steps the target policy and critic copy the online ones;
2. at o_{t+m}: N actions from the target policy, their target-critic
   distributions; the bootstrap distribution is their mixture and their means
   are the Q-values of the E-step;
3. critic: categorical TD loss of (o_t, a_t) against r + d·z projected on the atoms;
4. policy: decoupled MPO loss at o_{t+m} (`losses.mpo_policy_loss`), which also
   trains the dual variables (temperature, α_μ, α_Σ) with their own Adam;
5. gradients of policy and critic clipped to global norm 40.

With an `encoder` (Acme's observation network; images: `networks.ImageEncoder`) the batch holds
flat inputs and both heads read embeddings: the critic reads the online encoder's embedding of o_t
and its loss trains the encoder too; the policy and the bootstrap read the target encoder's
embedding of o_{t+m}, without gradient (so the policy loss never reaches the encoder), and the
target encoder is copied with the critic. Acting uses the target encoder and the online policy
(`acting_policy`), the embedding the policy is trained on. The online encoder runs in training mode
(BatchNorm on batch statistics, updating the running ones), the target encoder in evaluation mode.

Device: networks, targets, duals, optimiser state, the sampling generator and every tensor of
`update` live on `device` (a CUDA generator on CUDA); `update` takes a CPU or device batch and
moves it once, and its stats cost one device sync. `state_dict()` holds CPU tensors only (a run
resumes on either kind of machine); `load_state_dict` maps them onto this learner's device.
Acting stays on the CPU: `actor_state_dict()` hands out CPU copies of the policy's weights and
`cpu_policy()` a CPU copy of the policy to load them into (rollout workers act on CPU).

Data, replay, logging and checkpoint files stay in the training script.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from training.device import adam, cpu_state_dict, floats, generator_state, load_generator_state, to_device
from training.dmpo import losses
from training.dmpo.config import DMPOConfig  # noqa: F401 (re-exported)
from training.dmpo.networks import CategoricalCritic, EncodedPolicy, GaussianPolicy


@dataclass
class Batch:
    """A batch of n-step transitions as float32 tensors."""

    obs: torch.Tensor
    """(B, S) observation at t."""
    action: torch.Tensor
    """(B, D) action taken at t, in the policy's (normalised) units."""
    reward: torch.Tensor
    """(B,) n-step discounted return."""
    discount: torch.Tensor
    """(B,) bootstrap discount γ^m·Π d."""
    next_obs: torch.Tensor
    """(B, S) observation at t + m."""


class DMPOLearner:
    """Online and target networks, optimisers and dual variables; `update(batch)` does one step.

    `policy` and `critic` are moved to `device` (in place: the caller's modules are the learner's).
    `encoder` (optional) maps the batch's flat inputs to the embeddings both heads read.
    """

    def __init__(
        self, policy: GaussianPolicy, critic: CategoricalCritic, action_dim: int, config: DMPOConfig, seed: int = 0,
        device: torch.device | str = "cpu", encoder: torch.nn.Module | None = None,
    ):
        self.config = config
        self.device = torch.device(device)
        self.policy, self.critic = policy.to(self.device), critic.to(self.device)
        self.target_policy = copy.deepcopy(policy).requires_grad_(False)
        self.target_critic = copy.deepcopy(critic).requires_grad_(False)
        self.encoder = encoder.to(self.device).train() if encoder is not None else None  # BatchNorm: batch statistics
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False).eval() if encoder is not None else None
        dual = dict(device=self.device, requires_grad=True)
        self.log_temperature = torch.tensor([config.init_log_temperature], **dual)
        self.log_alpha_mean = torch.full((action_dim,), config.init_log_alpha_mean, **dual)
        self.log_alpha_std = torch.full((action_dim,), config.init_log_alpha_std, **dual)
        self.policy_opt = adam(policy.parameters(), lr=config.policy_lr)
        self.critic_opt = adam(self._critic_parameters(), lr=config.critic_lr)
        self.dual_opt = adam([self.log_temperature, self.log_alpha_mean, self.log_alpha_std], lr=config.dual_lr)
        self.steps = 0
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def _critic_parameters(self) -> list[torch.nn.Parameter]:
        """What the critic's loss trains: the critic, and the encoder when there is one (Acme)."""
        return list(self.critic.parameters()) + (list(self.encoder.parameters()) if self.encoder is not None else [])

    @property
    def acting_policy(self) -> torch.nn.Module:
        """obs -> (mean, std) as the actors run it: the policy, behind the target encoder when there is one."""
        return self.policy if self.encoder is None else EncodedPolicy(self.target_encoder, self.policy)

    def sync_targets(self) -> None:
        self.target_policy.load_state_dict(self.policy.state_dict())
        self.target_critic.load_state_dict(self.critic.state_dict())
        if self.encoder is not None:
            self.target_encoder.load_state_dict(self.encoder.state_dict())

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on `batch` (CPU or on the learner's device); stats as floats."""
        cfg = self.config
        batch = to_device(batch, self.device)
        if self.steps % cfg.target_update_period == 0:
            self.sync_targets()
        self.steps += 1
        n = cfg.num_samples

        with torch.no_grad():
            next_obs = batch.next_obs if self.encoder is None else self.target_encoder(batch.next_obs)  # (B, E)
            target_mean, target_std = self.target_policy(next_obs)
            noise = torch.randn((n, *target_mean.shape), generator=self.generator, device=self.device)
            sampled = target_mean + target_std * noise  # (N, B, D)
            tiled_next = next_obs.unsqueeze(0).expand(n, *next_obs.shape)  # embedded once, then tiled
            sampled_logits = self.target_critic(tiled_next, sampled)  # (N, B, A)
            bootstrap = losses.mixture_over_samples(sampled_logits)  # (B, A)
            q_values = self.target_critic.expected_value(sampled_logits)  # (N, B)

        obs = batch.obs if self.encoder is None else self.encoder(batch.obs)
        logits = self.critic(obs, batch.action)
        critic_loss, critic_stats = losses.categorical_td_loss(logits, batch.reward, batch.discount, bootstrap, self.critic.atoms)

        online_mean, online_std = self.policy(next_obs)
        policy_loss, mpo_stats = losses.mpo_policy_loss(
            online_mean, online_std, target_mean, target_std, sampled, q_values,
            self.log_temperature, self.log_alpha_mean, self.log_alpha_std,
            cfg.epsilon, cfg.epsilon_mean, cfg.epsilon_std,
        )

        self.critic_opt.zero_grad()
        critic_loss.backward()
        critic_grad = torch.nn.utils.clip_grad_norm_(self._critic_parameters(), cfg.grad_clip_norm)
        self.critic_opt.step()

        self.policy_opt.zero_grad()
        self.dual_opt.zero_grad()
        policy_loss.backward()
        policy_grad = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip_norm)
        self.policy_opt.step()
        self.dual_opt.step()
        with torch.no_grad():  # keep the duals' log-space parameters in range (Acme)
            for p in (self.log_temperature, self.log_alpha_mean, self.log_alpha_std):
                p.clamp_(min=losses.MIN_LOG_DUAL)

        return floats(critic_stats, mpo_stats, {
            "critic_grad_norm": critic_grad, "policy_grad_norm": policy_grad, "reward_mean": batch.reward.mean()})

    # -- acting on the CPU ------------------------------------------------------------------------

    def actor_state_dict(self) -> dict[str, torch.Tensor]:
        """CPU copies of what acting needs: the acting policy's state (load it into `cpu_policy()`)."""
        return cpu_state_dict(self.acting_policy)

    def cpu_policy(self) -> torch.nn.Module:
        """A CPU copy of the acting policy (no gradients) to act with; refresh it with
        `load_state_dict(learner.actor_state_dict())` after updates. Picklable, for rollout workers."""
        return copy.deepcopy(self.acting_policy).cpu().requires_grad_(False)

    # -- checkpoints --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything `load_state_dict` restores, as CPU tensors (for checkpoints on any machine)."""
        return cpu_state_dict({
            "policy": self.policy.state_dict(), "critic": self.critic.state_dict(),
            "target_policy": self.target_policy.state_dict(), "target_critic": self.target_critic.state_dict(),
            "duals": {
                "log_temperature": self.log_temperature, "log_alpha_mean": self.log_alpha_mean,
                "log_alpha_std": self.log_alpha_std,
            },
            "policy_opt": self.policy_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "dual_opt": self.dual_opt.state_dict(), "steps": self.steps, "generator": generator_state(self.generator),
            **({} if self.encoder is None else {
                "encoder": self.encoder.state_dict(), "target_encoder": self.target_encoder.state_dict()}),
        })

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()` (CPU or device tensors) onto this learner's device."""
        if (self.encoder is None) != ("encoder" not in state):
            raise ValueError("checkpoint and learner disagree on the image encoder: the checkpoint "
                             f"{'has' if 'encoder' in state else 'has no'} encoder, this learner "
                             f"{'has' if self.encoder is not None else 'has no'} encoder")
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.target_policy.load_state_dict(state["target_policy"])
        self.target_critic.load_state_dict(state["target_critic"])
        if self.encoder is not None:
            self.encoder.load_state_dict(state["encoder"])
            self.target_encoder.load_state_dict(state["target_encoder"])
        with torch.no_grad():
            self.log_temperature.copy_(state["duals"]["log_temperature"])
            self.log_alpha_mean.copy_(state["duals"]["log_alpha_mean"])
            self.log_alpha_std.copy_(state["duals"]["log_alpha_std"])
        self.policy_opt.load_state_dict(state["policy_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.dual_opt.load_state_dict(state["dual_opt"])
        self.steps = int(state["steps"])
        load_generator_state(self.generator, state["generator"])

