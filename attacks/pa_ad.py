"""PA-AD, policy-adversarial actor director (Sun et al. 2022, "Who Is the Strongest Enemy? Towards Optimal and
Efficient Evasion Attacks in Deep RL", ICLR).

A PPO "director" nu observes x = norm(s) and picks a unit direction d = nu(x) / ||nu(x)|| in the victim's action
space; the "actor" realizes it with PGD on the observation (10 sign steps of eps/10 from x, kept in the eps ball):
    x_hat = argmax_{||x_hat - x||_inf <= eps}  d . (mu(x_hat) - mu(x))
(the paper's objective pushes the victim's action change along d; we ascend the projection on d, whose gradient is
defined at the start x_hat = x, where the cosine of a zero change is not). The director is paid minus the
victim's reward: nu* = argmax_nu E[ sum_t gamma^t (-r(s_t, mu(x_hat_t))) ]. PPO with the papers' settings,
1M steps by default. At attack time the director plays its mean, so the attack is deterministic.

Training realizes the perturbations with a numpy copy of the same PGD (hand-written backward pass of the victim's
MLP; tests check it agrees with the torch version used at attack time), batched over num_envs=8 envs.
"""
import numpy as np
import torch

from attacks.checkpoint import policy_hash
from attacks.ppo_adversary import (
    FitJob,
    GaussianAgent,
    config_dict,
    config_from,
    forward_invariant,
    load_network,
    numpy_mlp,
    numpy_normalizer,
    numpy_weights,
    save_attack,
    train_ppo,
)

NAME = "pa_ad"
DEFAULT_STEPS = 1_000_000  # the papers' adversary budget
# 8 envs x 256 steps = 2048 per iteration: the PGD actor runs batched over the envs (one env costs ~5x more per step)
PPO_DEFAULTS = dict(num_envs=8, num_steps=256)


def directions(a):
    """Unit directions from the director's raw actions [B, act_dim]."""
    return a / a.norm(dim=1, keepdim=True).clamp_min(1e-8)


def pgd_along(actor, x, d, epsilon, steps=10):
    """The PA-AD actor: delta with ||delta||_inf <= eps that ascends d . mu(x + delta) by `steps` sign steps of eps/steps."""
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad((actor(x + delta) * d).sum(), delta)
        delta = (delta.detach() + (epsilon / steps) * grad.sign()).clamp(-epsilon, epsilon)
    return delta


def numpy_pgd_along(weights, act, x, d, epsilon, steps=10):
    """pgd_along in numpy (float32) for the training rollouts: forward and backward of the victim MLP by hand."""
    step, eps = np.float32(epsilon / steps), np.float32(epsilon)
    delta = np.zeros_like(x)
    for _ in range(steps):
        h, hidden = x + delta, []
        for w, b in weights[:-1]:
            h = np.tanh(h @ w + b) if act == "tanh" else np.maximum(h @ w + b, 0.0)
            hidden.append(h)
        g = d @ weights[-1][0].T  # d (d . mu) / d h_last
        for (w, _), h in zip(reversed(weights[:-1]), reversed(hidden)):
            g = (g * (1.0 - h * h) if act == "tanh" else g * (h > 0)) @ w.T
        delta = np.clip(delta + step * np.sign(g), -eps, eps)
    return delta


class PAADAttack:
    name = NAME

    def __init__(self, policy, epsilon, pgd_steps=10, **ppo):
        """ppo: overrides of attacks.ppo_adversary.PPOConfig (default here: num_envs=8, num_steps=256)."""
        self.policy, self.epsilon, self.pgd_steps = policy, float(epsilon), int(pgd_steps)
        self.cfg = config_from({**PPO_DEFAULTS, **ppo})
        self.obs_dim, self.act_dim = policy.actor.layers[0].in_features, policy.actor.layers[-1].out_features
        self.settings = dict(epsilon=self.epsilon, pgd_steps=self.pgd_steps, objective="dot", **config_dict(self.cfg))
        self.agent = self._new_agent(seed=0)
        self.fitted = False

    def _new_agent(self, seed):
        with torch.random.fork_rng():  # initialized from `seed`, without touching the caller's RNG
            torch.manual_seed(seed)
            return GaussianAgent(self.obs_dim, self.act_dim, self.cfg.hidden_sizes, self.cfg.init_std)

    def fit_job(self, env_id, seed=0, steps=None):
        """What a fit trains (train_ppo's pieces; attacks.ppo_adversary.fit_many fits several side by side)."""
        (weights, act), victim = numpy_weights(self.policy.actor), numpy_mlp(self.policy.actor)
        eps, n = self.epsilon, self.pgd_steps

        def victim_action(x, a):
            d = (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-8)).astype(np.float32)
            return victim(x + numpy_pgd_along(weights, act, x, d, eps, n))

        return FitJob(self._new_agent(seed), numpy_normalizer(self.policy.obs_norm), victim_action, seed, NAME)

    def fit(self, env_id, steps=DEFAULT_STEPS, seed=0, progress=False):
        job = self.fit_job(env_id, seed)
        self.agent = job.agent
        self.log = train_ppo(job.agent, env_id, steps, seed, job.normalize, job.victim_action, self.cfg, progress, desc=job.desc)
        self.fitted = True
        return self

    def __call__(self, x, gens=None):
        if not self.fitted:
            raise RuntimeError(f"{self.name}: fit() or load() the director before attacking")
        with torch.no_grad():
            d = directions(forward_invariant(self.agent.actor, x))
        return x + pgd_along(self.policy.actor, x, d, self.epsilon, self.pgd_steps)

    def save(self, path):
        meta = dict(settings=self.settings, epsilon=self.epsilon, victim_hash=policy_hash(self.policy))
        save_attack(path, self.name, self.agent.state_dict(), meta)

    def load(self, path):
        load_network(path, self.name, self.policy, self.epsilon, self.agent, "director network")
        self.fitted = True
        return self
