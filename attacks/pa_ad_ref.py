"""PA-AD as its authors evaluate MuJoCo agents: a reference attack that reproduces the published evaluation, not a
stronger attack. Opt-in (`--attacks pa_ad_ref` or `ref`); our `pa_ad` (attacks/pa_ad.py) stays the one in `all`.

Source: Sun et al. 2022, "Who Is the Strongest Enemy? Towards Optimal and Efficient Evasion Attacks in Deep RL",
ICLR, arXiv 2106.05087. Official code: github.com/umd-huang-lab/paad_adv_rl (read at commit ef04e79), folder
code_mujoco/trainer_atla/ (a fork of ATLA's code); what it does, with file and function:

- Realizer, `Trainer.perturb_obs_fgsm` in policy_gradients/agent.py, the same in training (`run_trajectories`) and at
  test time (`apply_attack`, `--attack-method paadvpolicy`):
  start: noise ~ U(-eps/K, eps/K) per coordinate (torch's global RNG), K = `attack_steps` = 10 in every config;
  loss: diff = mu(x + noise) - mu(x) (the victim's mean head, mu(x) detached) and
      L = -mean_batch( cos(diff, d) + ||diff||_2 ),   cos = torch.nn.CosineSimilarity() (dim 1, eps 1e-8),
  with d the director's action as is (not normalized; the cosine ignores its scale);
  step: ONE, update = eps * sign(dL / d noise), and the caller sets x_hat = x + update. The start noise only says
  where the gradient is taken: the step is from the clean x, so every coordinate moves by exactly eps (0 where the
  gradient is 0); there is no projection (none is needed) and no clip to the normalizer's +-10.
  Sign: the update ascends L, i.e. it DEScends cos(diff, d) + ||diff|| to first order at the start. We keep it as
  written: the director learns through this same realizer, so for the cosine it only flips which direction it must
  output, and the published numbers were produced this way.
- Director (`--mode adv_pa_ppo`): `CtsPolicy` (policy_gradients/models.py), 64-64 tanh, obs_dim -> act_dim Gaussian
  mean with a state-independent std (initially 1), output layer initialized at scale 0.01; the perturbation it
  directs is realized from its SAMPLED action during training and from its mean at test time.
- Director training (`Trainer.run_trajectories` with collect_adversary_trajectory, `Trainer.train_step`): the
  victim acts STOCHASTICALLY, `policy_model.sample` = mu(x_hat) + std * N(0, 1) with the checkpoint's std. run.py
  makes the victim deterministic (log_stdev = -100) only with `--deterministic`, which it refuses without
  `--adv-policy-only`; the README's command has neither. The director's reward is minus the env's reward as the
  env wrapper normalized it: r / std of the victim's discounted return, clipped to +-10, with the statistics of the
  victim's checkpoint frozen while the adversary collects (`normalizer_read_only`, policy_gradients/custom_env.py).
  It observes the victim's normalized state (frozen). Settings: the README's command `--mode adv_pa_ppo
  --ppo-lr-adam 0.0 --adv-ppo-lr-adam 3e-5 --adv-val-lr 3e-5 --adv-entropy-coeff 0.0 --adv-clip-eps 0.4` ("the
  best hyperparameters for the adversary training via a hyperparameter grid search") on the configs
  configs/config_*_vanilla_ppo.json: 1 env x `t` = 2048 steps per iteration, 10 policy and 10 value epochs x 32
  minibatches, gamma 0.99, lambda 0.95, Adam eps 1e-5, both learning rates annealed linearly to 0, no gradient
  clipping (`clip_grad_norm` -1), value clipping 0.2 (off in the Hopper config), advantages normalized over the
  whole batch. With `--ppo-lr-adam 0.0` each iteration is one adversary rollout, for `train_steps` iterations:
  976 x 2048 = 1,998,848 env steps (Hopper, Walker2d, HalfCheetah), 4882 x 2048 = 9,998,336 (Ant).
  get_best_pickle.py then extracts the final director.
- Test (test.py `--deterministic --attack-method paadvpolicy`): the victim plays its mean, the director its mean,
  the realizer as above with fresh start noise at every step; 50 episodes (`--num-episodes`).

This file: that realizer (start noise from the episode's generator, so batched == one by one), a director trained
against the sampled victim with the README's settings, and the official budget for the env (`official_steps`).
Where it still differs from the official code (none changes the attack's form):
- the PPO mechanics are ours (attacks/ppo_adversary.py): one Adam and one joint loss for actor and critic (vf_coef
  0.5), the value clipped with the ratio's 0.4 (official 0.2, and none on Hopper), advantages normalized per
  minibatch;
- the reward is -r scaled by the running std of the director's own discounted return (our checkpoints hold no
  reward statistics); both are positive rescalings of -r, clipped to +-10;
- the env steps with the victim's sampled action clipped to the action bounds (the official code hands it to
  gym's -v2 envs unclipped); gymnasium -v4/-v5 MuJoCo envs instead of gym -v2 with mujoco-py;
- the loss is summed over the batch instead of averaged: the same sign, and a row's step does not depend on its batch.

Why it is weaker than `pa_ad`: the realizer is one sign step of a gradient taken at a random point up to eps/10 from
x, where the cosine of a tiny, random action change dominates the gradient (the norm term's part is ~1e-3 of it on
the test victims), so how closely x_hat follows the director depends on the random start; pa_ad ascends
d . mu(x_hat) by 10 projected sign steps from x. And the director is trained against a noisy victim but evaluated
against the deterministic one. It exists to compare our agents with the published PA-AD tables.
"""
import numpy as np
import torch
import torch.nn.functional as F

from attacks import uniform_like
from attacks.pa_ad import PAADAttack
from attacks.ppo_adversary import (
    FitJob,
    config_dict,
    forward_invariant,
    numpy_normalizer,
    numpy_sampled_victim,
    numpy_weights,
)

NAME = "pa_ad_ref"
START_STEPS = 10  # official `attack_steps`: the start noise is U(-eps/10, eps/10)
COS_EPS = 1e-8  # torch.nn.CosineSimilarity's default, which the official loss uses
START_NOISE_STREAM = 2  # numpy seed [seed, 2] of the start noise during training (1 is the victim's noise)
# The official README command: the director's learning rates, ratio clip and entropy; 1 env x 2048 steps (`t`);
# no gradient clipping (`clip_grad_norm` -1).
PPO_REF = dict(num_envs=1, num_steps=2048, learning_rate=3e-5, clip_coef=0.4, ent_coef=0.0, max_grad_norm=0.0)
ITERATIONS = {"Ant": 4882}  # `train_steps` of the official configs: 976 for Hopper, Walker2d and HalfCheetah


def official_steps(env_id):
    """The official director budget for the env's robot: train_steps x 2048 env steps (976 x 2048 unless Ant)."""
    return ITERATIONS.get(env_id.split("-")[0], 976) * 2048


def official_step(actor, x, d, epsilon, noise):
    """The official realizer's perturbation: eps * sign(grad_noise L) at x + noise, with
    L = -sum_rows(cos(mu(x + noise) - mu(x), d) + ||mu(x + noise) - mu(x)||_2); the caller adds it to the clean x."""
    with torch.no_grad():
        mu = actor(x)
    noise = noise.detach().requires_grad_(True)
    with torch.enable_grad():
        diff = actor(x + noise) - mu
        loss = -(F.cosine_similarity(diff, d, dim=1, eps=COS_EPS) + diff.norm(dim=1)).sum()
        (grad,) = torch.autograd.grad(loss, noise)
    return epsilon * grad.sign()


def numpy_official_grad(weights, act, x, d, noise):
    """The gradient w.r.t. noise of sum_rows(cos(diff, d) + ||diff||_2), diff = mu(x + noise) - mu(x), in numpy (in
    the inputs' dtype: float32 in training): the victim's forward at x and at x + noise and the backward by hand
    (weights, act: attacks.ppo_adversary.numpy_weights of the victim's actor). The official loss L is minus this,
    averaged over the batch."""
    f = np.tanh if act == "tanh" else (lambda z: np.maximum(z, 0.0))
    mu0 = x
    for w, b in weights[:-1]:
        mu0 = f(mu0 @ w + b)
    mu0 = mu0 @ weights[-1][0] + weights[-1][1]
    h, hidden = x + noise, []
    for w, b in weights[:-1]:
        h = f(h @ w + b)
        hidden.append(h)
    diff = h @ weights[-1][0] + weights[-1][1] - mu0
    n = np.linalg.norm(diff, axis=1, keepdims=True)
    m = np.maximum(np.linalg.norm(d, axis=1, keepdims=True), COS_EPS)
    nc = np.maximum(n, COS_EPS)
    cos = (diff * d).sum(1, keepdims=True) / (nc * m)
    # d/d diff of cos + ||diff||, with u = diff / ||diff|| (0 at diff = 0, as torch's norm backward)
    u = diff / np.maximum(n, 1e-30)
    g = (d / (nc * m) + (1.0 - cos / nc) * u) @ weights[-1][0].T
    for (w, _), hh in zip(reversed(weights[:-1]), reversed(hidden)):
        g = (g * (1.0 - hh * hh) if act == "tanh" else g * (hh > 0)) @ w.T
    return g


def numpy_official_step(weights, act, x, d, epsilon, noise):
    """official_step in numpy for the training rollouts: L is minus (cos + norm), so the official
    eps * sign(dL/dnoise) is -eps * sign(numpy_official_grad)."""
    return -np.float32(epsilon) * np.sign(numpy_official_grad(weights, act, x, d, noise)).astype(np.float32)


class PAADRefAttack(PAADAttack):
    name = NAME

    def __init__(self, policy, epsilon, start_steps=START_STEPS, **ppo):
        """ppo: overrides of attacks.ppo_adversary.PPOConfig (default here: PPO_REF, the official settings)."""
        super().__init__(policy, epsilon, pgd_steps=1, **{**PPO_REF, **ppo})
        self.start_steps = int(start_steps)
        self.settings = dict(epsilon=self.epsilon, start_steps=self.start_steps, realizer="official_one_step",
                             victim="sampled", **config_dict(self.cfg))

    def fit_job(self, env_id, seed=0, steps=None):
        """What a fit trains: the director against the sampled victim (train_ppo's pieces)."""
        (weights, act), victim = numpy_weights(self.policy.actor), numpy_sampled_victim(self.policy, seed)
        start_rng = np.random.default_rng([seed, START_NOISE_STREAM])
        eps, half_width = self.epsilon, self.epsilon / self.start_steps

        def victim_action(x, a):  # a: the director's sampled action, the direction as is (as the official code)
            noise = start_rng.uniform(-half_width, half_width, size=x.shape).astype(np.float32)
            return victim(x + numpy_official_step(weights, act, x, a, eps, noise))

        return FitJob(self._new_agent(seed), numpy_normalizer(self.policy.obs_norm), victim_action, seed, NAME)

    def fit(self, env_id, steps=None, seed=0, progress=False):
        """Train the director against the sampled victim; steps None: the official budget for env_id."""
        return super().fit(env_id, official_steps(env_id) if steps is None else steps, seed, progress)

    def start(self, x, gens):
        """The official random start, U(-eps/K, eps/K) per coordinate, row i from gens[i]."""
        return (self.epsilon / self.start_steps) * uniform_like(x, gens)

    def __call__(self, x, gens):
        if not self.fitted:
            raise RuntimeError(f"{NAME}: fit() or load() the director before attacking")
        if gens is None:
            raise ValueError(f"{NAME}: needs one torch.Generator per row for its random start")
        with torch.no_grad():
            d = forward_invariant(self.agent.actor, x)
        return x + official_step(self.policy.actor, x, d, self.epsilon, self.start(x, gens))
