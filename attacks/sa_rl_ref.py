"""SA-RL, the learned "optimal" attack, as ATLA's authors evaluate MuJoCo agents: a reference attack that reproduces
the published evaluation, not a stronger attack. Opt-in (`--attacks sa_rl_ref` or `ref`); our `sa_rl`
(attacks/sa_rl.py) stays the one in `all`.

Source: Zhang et al. 2021, "Robust Reinforcement Learning on State Observations with Learned Optimal Adversary",
ICLR, arXiv 2101.08452. Official code: github.com/huanzhang12/ATLA_robust_RL (read at commit dfdf8f5), src/; what it
does, with file and function:

- Adversary (`--mode adv_ppo`, src/run.py): `CtsPolicy` (src/policy_gradients/models.py), 64-64 tanh, obs_dim ->
  obs_dim Gaussian mean with a state-independent std (initially 1), output layer initialized at scale 0.01.
- Squash: HARDTANH, not tanh. Training (`Trainer.run_trajectories` in src/policy_gradients/agent.py, collecting the
  adversary's trajectory): x_hat = x + hardtanh(a) * ADV_EPS with a the adversary's SAMPLED action; test time
  (`Trainer.apply_attack`, `--attack-method advpolicy`): x_hat = x + hardtanh(mean) * eps. So every adversary output
  beyond +-1 perturbs its coordinate by exactly +-eps, and PPO's Gaussian lives on the unsquashed a.
- The victim acts STOCHASTICALLY while the adversary trains: `policy_model.sample` = mu(x_hat) + std * N(0, 1) with
  the checkpoint's std (run.py makes it deterministic only with `--deterministic`, which it refuses without
  `--adv-policy-only`; neither the README's command nor the scan configs use them).
- Reward: minus the env's reward as the env wrapper normalized it (r / std of the victim's discounted return,
  clipped to +-10, statistics of the victim's checkpoint frozen while the adversary collects: `normalizer_read_only`,
  src/policy_gradients/custom_env.py). It observes the victim's normalized state (frozen).
- PPO (src/MuJoCo.json and configs/attack_ppo_*_scan.py): 1 env x `t` = 2048 steps per iteration, 10 policy and 10
  value epochs x 32 minibatches, gamma 0.99, lambda 0.95, Adam eps 1e-5, no gradient clipping (`clip_grad_norm`
  -1), value clipping 0.2, advantages normalized over the whole batch, separate policy and value learning rates.
  Budget: `train_steps` x 2048 = 488 x 2048 = 999,424 env steps (Hopper, Walker2d, HalfCheetah scans), 2441 x 2048
  = 4,999,168 (Ant). The victim's learning rate is 0 (`ppo_lr_adam` 0.0), so each iteration is one adversary rollout.
- Hyperparameters: the published attack is the STRONGEST of a grid. configs/attack_ppo_<env>_scan.py trains 216
  adversaries per victim (anneal_lr {on, off} x ratio clip {0.2, 0.4} x entropy {0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3} x
  3 policy x 3 value learning rates, e.g. Hopper {3e-4, 1e-3, 3e-3} for both), src/optimal_attack_functions.sh tests
  each (test.py `--deterministic --attack-method advpolicy`: the victim plays its mean, the adversary its mean, 50
  episodes) and src/parse_optimal_attack_results.py keeps the lowest mean return.

This file: the hardtanh squash and the sampled victim in training, with ONE point of that grid: anneal on, clip 0.2,
entropy 0, learning rate 3e-4 for policy and value (in the Hopper, Walker2d and Ant grids; HalfCheetah's value rates
are 1e-5..1e-4), no gradient clipping, and the official budget for the env (`official_steps`). Where it differs:
- one adversary, not the strongest of 216: running the grid is 216 fits per victim; a single point is weaker;
- the PPO mechanics are ours (attacks/ppo_adversary.py): one Adam and one joint loss for actor and critic (vf_coef
  0.5), advantages normalized per minibatch;
- the reward is -r scaled by the running std of the adversary's own discounted return (our checkpoints hold no
  reward statistics); both are positive rescalings of -r, clipped to +-10;
- the env steps with the victim's sampled action clipped to the action bounds (the official code hands it to gym's
  -v2 envs unclipped); gymnasium -v4/-v5 MuJoCo envs instead of gym -v2 with mujoco-py.

Why it is weaker than `sa_rl`: besides the single grid point, with hardtanh every sample of the adversary's Gaussian
beyond +-1 gives the same +-eps, so where its mean has left [-1, 1] the rollouts carry no signal about moving it
(tanh keeps one), and the adversary learns against a noisy victim but is evaluated against the deterministic one.
It exists to compare our agents with the published SA-RL / "optimal attack" tables (ATLA's, and the PA-AD paper's).
"""
import numpy as np
import torch
import torch.nn.functional as F

from attacks.ppo_adversary import FitJob, config_dict, forward_invariant, numpy_normalizer, numpy_sampled_victim
from attacks.sa_rl import SARLAttack

NAME = "sa_rl_ref"
PPO_REF = dict(max_grad_norm=0.0)  # `clip_grad_norm` -1; the rest of SARLAttack's PPO is a point of ATLA's grid
ITERATIONS = {"Ant": 2441}  # `train_steps` of configs/attack_ppo_*_scan.py: 488 for Hopper, Walker2d, HalfCheetah


def official_steps(env_id):
    """The official adversary budget for the env's robot: train_steps x 2048 env steps (488 x 2048 unless Ant)."""
    return ITERATIONS.get(env_id.split("-")[0], 488) * 2048


class SARLRefAttack(SARLAttack):
    name = NAME

    def __init__(self, policy, epsilon, **ppo):
        """ppo: overrides of attacks.ppo_adversary.PPOConfig (default here: SARLAttack's with PPO_REF)."""
        super().__init__(policy, epsilon, **{**PPO_REF, **ppo})
        self.settings = dict(epsilon=self.epsilon, squash="hardtanh", victim="sampled", **config_dict(self.cfg))

    def fit_job(self, env_id, seed=0, steps=None):
        """What a fit trains: the adversary against the sampled victim (train_ppo's pieces)."""
        victim, eps = numpy_sampled_victim(self.policy, seed), self.epsilon

        def victim_action(x, a):  # a: the adversary's sampled action; hardtanh = clip to [-1, 1]
            return victim(x + eps * np.clip(a, -1.0, 1.0))

        return FitJob(self._new_agent(seed), numpy_normalizer(self.policy.obs_norm), victim_action, seed, NAME)

    def fit(self, env_id, steps=None, seed=0, progress=False):
        """Train the adversary against the sampled victim; steps None: the official budget for env_id."""
        return super().fit(env_id, official_steps(env_id) if steps is None else steps, seed, progress)

    def perturbation(self, x):
        """eps * hardtanh(the adversary's mean at x): exactly +-eps wherever the mean is beyond +-1."""
        with torch.no_grad():
            return self.epsilon * F.hardtanh(forward_invariant(self.agent.actor, x))

    def __call__(self, x, gens=None):
        if not self.fitted:
            raise RuntimeError(f"{NAME}: fit() or load() the adversary before attacking")
        return x + self.perturbation(x)
