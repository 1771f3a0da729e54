# docs: README.md#pruned_ppopy
"""Pruned PPO: in-training element-wise pruning as a robustness intervention, a fork of sappo.py.

Paper: "Pruning Cannot Hurt Robustness: Certified Trade-offs in Reinforcement Learning" (arXiv 2510.12939), Algorithm 1
(App. A: PPO with pruning and optional SA regularization), Sec. 4-5, App. D. Per optimizer step t (minibatch):
    loss   PPO loss + kappa * SA-PPO's regularizer (as sappo.py; --kappa 0: pruning only, the inner loop is skipped)
    prune  if t / T > --burn-in and t % --prune-interval == 0: masks for sparsity s(t), the cubic schedule of Zhu & Gupta
           (arXiv 1710.01878), s(t) = s_f (1 - (1 - p)^3), p = (t/T - burn_in) / (prune_end - burn_in) clipped to [0, 1]
    apply  W <- W * M after every optimizer step (pruned weights stay exactly 0; Adam's moments of the newly pruned
           weights are zeroed); magnitude_ste instead keeps dense W, steps it with the gradient taken at W * M
           (straight-through) and recomputes M from |W|, so weights can regrow
Methods (--prune-method): magnitude (smallest |w| per layer, nested masks), random (ERK per-layer densities, Evci et al.
arXiv 1911.11134, nested), magnitude_ste, saliency (first-order Taylor |w dL/dw| summed over the --prune-interval
minibatches before each mask update that can change a mask, nested), none. Masks are saved under prune/ in the
checkpoint; the stored weights are already masked. Beyond pruning, `diff sappo.py pruned_ppo.py` shows the 256-256
default (App. D; sappo.py's per-env learning rates were tuned at 64-64) and the W&B labels (method and sparsity).
The certified report (Theorem 1: the product of per-layer norm surrogates) is eval_attacks.py's `certificate`.

Reproduce a frontier point of the paper (Table 2, Hopper, magnitude; the paper trains 50M steps, we 2M):
    python pruned_ppo.py --env-id Hopper-v4 --prune-method magnitude --target-sparsity 0.3
    python eval_attacks.py --model runs/Hopper-v4__pruned_ppo__1__*/pruned_ppo.safetensors --attacks fast
Ctrl-C or SIGTERM saves the run and prints how to continue it exactly (docs/training.md):
    python pruned_ppo.py --resume runs/Hopper-v4__pruned_ppo__1__*/pruned_ppo.safetensors
Many seeds in one process, each the same experiment as its single-seed run (docs/training.md):
    python pruned_ppo.py --env-id Hopper-v4 --seed 1 --num-seeds 3
"""
import dataclasses
import functools
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Literal, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from gymnasium.envs.mujoco import MujocoEnv

from envs import quiet_warnings

# Per-environment defaults. Learning rates, initial std, value clipping, lr annealing and entropy are SA-PPO's robust
# configs (config_{hopper,walker}_robust_ppo_sgld.json = the vanilla ones; config_halfcheetah_robust_ppo_*.json: actor
# 1e-4, critic 1e-3, no annealing, entropy 1e-4, unlike its vanilla 3e-4/1e-4); eps (the attack budget, l_inf in
# normalized-observation units) and budgets are the BARPO paper's (Sec. 5, App. F.3).
ENV_DEFAULTS = {
    "Hopper": dict(epsilon=0.075, total_timesteps=2_000_000, learning_rate=3e-4, value_learning_rate=2.5e-4, init_std=1.0, clip_vloss=False, anneal_lr=True, ent_coef=0.0),
    "Walker2d": dict(epsilon=0.05, total_timesteps=2_000_000, learning_rate=4e-4, value_learning_rate=3e-4, init_std=1.0, clip_vloss=True, anneal_lr=True, ent_coef=0.0),
    "HalfCheetah": dict(epsilon=0.15, total_timesteps=2_000_000, learning_rate=1e-4, value_learning_rate=1e-3, init_std=0.5, clip_vloss=True, anneal_lr=False, ent_coef=1e-4),
    "Ant": dict(epsilon=0.15, total_timesteps=10_000_000, learning_rate=3e-4, value_learning_rate=3e-4, init_std=1.0, clip_vloss=True, anneal_lr=True, ent_coef=0.0),
    "Humanoid": dict(epsilon=0.075, total_timesteps=10_000_000, learning_rate=3e-4, value_learning_rate=3e-4, init_std=1.0, clip_vloss=True, anneal_lr=True, ent_coef=0.0),
}
GENERIC_DEFAULTS = dict(epsilon=None, total_timesteps=1_000_000, learning_rate=3e-4, value_learning_rate=3e-4, init_std=1.0, clip_vloss=True, anneal_lr=True, ent_coef=0.0)
# Regularizer weight kappa per env: 1.0 Hopper, 0.1 otherwise (the project's defaults for the SA-PPO baseline).
KAPPA_DEFAULTS = {"Hopper": 1.0, "Walker2d": 0.1, "HalfCheetah": 0.1, "Ant": 0.1}
GENERIC_KAPPA = 0.1


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    num_seeds: int = 1
    """train seeds seed, seed+1, ..., seed+num_seeds-1 side by side in this process (each its own run folder and checkpoint)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    torch_threads: int = 1
    """torch intra-op threads (1: on small machines more threads stall; run one process per seed)"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "robust-rl"
    """the wandb's project name"""
    wandb_entity: Optional[str] = None
    """the entity (team) of wandb's project"""
    wandb_group: Optional[str] = None
    """the W&B group of the run's seeds (default: env, script and the method's settings; tags say the same)"""
    save_model: bool = True
    """whether to save the model (one .safetensors file) into the `runs/{run_name}` folder"""
    save_every: int = 10
    """also save every this many iterations, so a run that dies keeps its last model (0: only at the end)"""
    resume: Optional[str] = None
    """continue the run saved in this checkpoint exactly where it stopped (its flags are restored; see docs/training.md)"""
    eval_episodes: int = 10
    """deterministic episodes with the frozen normalizer at the end of training (0: skip)"""
    progress: Optional[bool] = None
    """show a progress bar (default: only on an interactive terminal; plain log lines otherwise)"""

    # Algorithm specific arguments
    env_id: str = "HalfCheetah-v4"
    """the id of the environment (gymnasium MuJoCo -v4 or -v5)"""
    total_timesteps: Optional[int] = None
    """total timesteps of the experiments (default per env: 2M Hopper/Walker2d/HalfCheetah, 10M Ant/Humanoid, 1M otherwise)"""
    learning_rate: Optional[float] = None
    """the actor's Adam learning rate (default per env, SA-PPO configs; 3e-4 otherwise)"""
    value_learning_rate: Optional[float] = None
    """the critic's Adam learning rate (default per env, SA-PPO configs; 3e-4 otherwise)"""
    num_envs: int = 1
    """the number of parallel game environments"""
    num_steps: int = 2048
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: Optional[bool] = None
    """Toggle linear learning-rate annealing for policy and value networks (default per env, SA-PPO configs: on)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: int = 32
    """the number of mini-batches"""
    update_epochs: int = 10
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """Toggles advantages normalization"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient"""
    clip_vloss: Optional[bool] = None
    """Toggles whether or not to use a clipped loss for the value function (default per env, SA-PPO configs)"""
    ent_coef: Optional[float] = None
    """coefficient of the entropy bonus (default per env, SA-PPO configs: 0)"""
    vf_coef: float = 0.5
    """coefficient of the value function"""
    max_grad_norm: float = 0.0
    """the maximum norm for the gradient clipping of each network (0: off, as in SA-PPO)"""
    target_kl: Optional[float] = None
    """the target KL divergence threshold"""
    init_std: Optional[float] = None
    """initial action std of the Gaussian policy (default per env: 0.5 HalfCheetah, 1.0 otherwise)"""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """hidden layer sizes of the actor and the critic"""
    activation: Literal["tanh", "relu"] = "tanh"
    """hidden activation of the actor and the critic"""
    obs_clip: float = 10.0
    """clip normalized observations to +-obs_clip"""
    reward_clip: float = 10.0
    """clip scaled rewards to +-reward_clip (training only; logged returns are raw)"""
    epsilon: Optional[float] = None
    """l_inf attack budget in normalized-observation units (default per env: 0.075 Hopper/Humanoid, 0.05 Walker2d, 0.15 HalfCheetah/Ant)"""
    eps_ramp: float = 0.75
    """eps ramps linearly from 0 to --epsilon over this fraction of the iterations, then stays (paper: 732 of 976)"""
    kappa: Optional[float] = None
    """weight of the KL regularizer (default per env: 1.0 Hopper, 0.1 Walker2d/HalfCheetah/Ant, 0.1 otherwise)"""
    inner_steps: int = 10
    """SGLD steps of the inner maximization"""
    inner_step_size: float = 0.1
    """SGLD step size as a fraction of the current eps (0.1: eps/10)"""
    sgld_temperature: float = 1e-5
    """SGLD inverse temperature beta (SA-PPO's 1e-5): step k adds sqrt(2 * step * beta) / (k + 2) * N(0, 1) to the gradient"""
    prune_method: Literal["none", "magnitude", "random", "magnitude_ste", "saliency"] = "magnitude"
    """pruning rule: magnitude (smallest |w| per layer), random (ERK), magnitude_ste (straight-through), saliency (|w dL/dw|), none"""
    target_sparsity: float = 0.5
    """final fraction of the prunable weights set to zero"""
    burn_in: float = 0.25
    """fraction of the optimizer steps before pruning starts (sparsity 0 until then; Algorithm 1's beta)"""
    prune_end: float = 0.75
    """fraction of the optimizer steps at which the cubic schedule reaches --target-sparsity (then it stays)"""
    prune_interval: int = 10
    """optimizer steps between mask updates ("micro-pruning": the paper finds 10-20 steadier than every step)"""
    prune_target: Literal["actor", "critic", "both"] = "both"
    """which networks are pruned (the paper: both)"""
    prune_output_layer: bool = False
    """also prune the output layers (off: the action head, initialized at 0.01 std, would lose its few weights first)"""

    # to be filled in runtime (hidden from --help)
    batch_size: tyro.conf.Suppress[int] = 0
    """the batch size (computed in runtime)"""
    minibatch_size: tyro.conf.Suppress[int] = 0
    """the mini-batch size (computed in runtime)"""
    num_iterations: tyro.conf.Suppress[int] = 0
    """the number of iterations (computed in runtime)"""


def fail(msg):
    """Bad input ends with one line on stderr and exit status 2, never a traceback."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def resolve_args(args):
    try:
        gym.spec(args.env_id)
    except Exception:
        fail(f"unknown env id {args.env_id!r} (gymnasium has no such environment)")
    defaults = ENV_DEFAULTS.get(args.env_id.split("-")[0], GENERIC_DEFAULTS)
    for k, v in defaults.items():
        if hasattr(args, k) and getattr(args, k) is None:
            setattr(args, k, v)
    for name in ("total_timesteps", "num_seeds", "num_envs", "num_steps", "num_minibatches", "update_epochs", "torch_threads"):
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("learning_rate", "value_learning_rate", "init_std", "obs_clip", "reward_clip"):
        if not getattr(args, name) > 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 < args.gamma <= 1 or not 0 <= args.gae_lambda <= 1:
        fail(f"--gamma must be in (0, 1] and --gae-lambda in [0, 1], got {args.gamma}, {args.gae_lambda}")
    if args.save_every < 0 or args.eval_episodes < 0 or args.max_grad_norm < 0 or not 0 <= args.ent_coef < math.inf:
        fail("--save-every, --eval-episodes, --max-grad-norm and --ent-coef must be >= 0")
    if args.target_kl is not None and args.num_seeds > 1:
        fail("--target-kl stops one seed's epochs early, which --num-seeds > 1 cannot do per seed: train those seeds apart")
    if not args.hidden_sizes or min(args.hidden_sizes) <= 0:
        fail(f"--hidden-sizes must be positive integers, got {args.hidden_sizes}")
    # robust training: the budget must be known (docs/protocol.md); kappa defaults per env
    if args.epsilon is None:
        fail(f"no default --epsilon for {args.env_id} (defaults exist for {', '.join(ENV_DEFAULTS)}): pass --epsilon")
    if args.kappa is None:
        args.kappa = KAPPA_DEFAULTS.get(args.env_id.split("-")[0], GENERIC_KAPPA)
    if not 0 <= args.epsilon < math.inf or not 0 <= args.kappa < math.inf:
        fail(f"--epsilon and --kappa must be finite and >= 0, got {args.epsilon}, {args.kappa}")
    if args.inner_steps <= 0 or not args.inner_step_size > 0 or not args.sgld_temperature >= 0 or not 0 <= args.eps_ramp <= 1:
        fail("--inner-steps and --inner-step-size must be positive, --sgld-temperature >= 0 and --eps-ramp in [0, 1]")
    if not 0 <= args.target_sparsity < 1 or not 0 <= args.burn_in < args.prune_end <= 1 or args.prune_interval <= 0:
        fail("--target-sparsity must be in [0, 1), 0 <= --burn-in < --prune-end <= 1, and --prune-interval positive")
    args.batch_size = int(args.num_envs * args.num_steps)
    if args.batch_size % args.num_minibatches:
        fail(f"--num-minibatches {args.num_minibatches} does not divide the batch size {args.batch_size}")
    args.minibatch_size = int(args.batch_size // args.num_minibatches)
    args.num_iterations = max(1, args.total_timesteps // args.batch_size)
    return args


def make_env(env_id, seed):
    def thunk():
        env = gym.make(env_id)
        if not isinstance(env.action_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
            fail(f"{env_id} needs a Box action space and flat observations")
        if not isinstance(env.unwrapped, MujocoEnv):  # every save holds the simulator's state, for --resume
            fail(f"{env_id} is not a MuJoCo env: the checkpoints save MuJoCo's state to resume from")
        env.action_space.seed(seed)
        return env

    return thunk


class Linear(nn.Module):
    """One nn.Linear per seed, stacked: weight [N, out, in] (each seed's is nn.Linear's layout), bias [N, out];
    x [N, B, in] -> [N, B, out], row block n through seed n's layer. Orthogonal init from each seed's own generator,
    so seed k's weights do not depend on N."""

    def __init__(self, n_in, n_out, gain, generators):
        super().__init__()
        self.in_features, self.out_features = n_in, n_out
        self.weight = nn.Parameter(torch.stack([torch.nn.init.orthogonal_(torch.empty(n_out, n_in), gain, generator=g) for g in generators]))
        self.bias = nn.Parameter(torch.zeros(len(generators), n_out))

    def forward(self, x, seed=None):
        """seed=n: x [1, B, in] through seed n's layer alone."""
        weight, bias = (self.weight, self.bias) if seed is None else (self.weight[seed : seed + 1], self.bias[seed : seed + 1])
        if self.out_features == 1:
            # bmm takes a gemv path at N = 1 that rounds differently from N > 1; multiply-and-sum is the same for any N
            return (x * weight).sum(-1, keepdim=True) + bias.unsqueeze(1)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class MLP(nn.Module):
    """Linear layers in `layers` (the checkpoint names them layers.{i}); the last one has no activation."""

    def __init__(self, sizes, activation, out_std, generators):
        super().__init__()
        n = len(sizes) - 1
        self.layers = nn.ModuleList([Linear(sizes[i], sizes[i + 1], out_std if i == n - 1 else np.sqrt(2), generators) for i in range(n)])
        self.act = torch.tanh if activation == "tanh" else torch.relu

    def forward(self, x, seed=None):
        for layer in self.layers[:-1]:
            x = self.act(layer(x, seed))
        return self.layers[-1](x, seed)


class Actor(MLP):
    """Gaussian policy: MLP mean head and a state-independent log-std [N, act_dim]."""

    def __init__(self, sizes, activation, init_std, generators):
        super().__init__(sizes, activation, 0.01, generators)
        self.log_std = nn.Parameter(torch.full((len(generators), sizes[-1]), math.log(init_std)))


class ObsNormalizer(nn.Module):
    """Running mean/var of raw observations per seed (buffers [N, obs_dim], saved with the agent); frozen unless
    update() is called."""

    def __init__(self, obs_dim, num_seeds, clip=10.0, eps=1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(num_seeds, obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(num_seeds, obs_dim, dtype=torch.float64))
        self.register_buffer("count", torch.full((num_seeds,), 1e-4, dtype=torch.float64))

    def update(self, x):
        """Parallel-variance update with a numpy batch [N, B, obs_dim] (Chan et al., as gymnasium's RunningMeanStd);
        sums instead of np.mean/np.var, whose Python overhead dominates at one observation per step."""
        mean, var, count = self.mean.numpy(), self.var.numpy(), self.count.numpy()[:, None]
        n = x.shape[1]
        b_mean = x.sum(1) / n
        b_var = np.square(x - b_mean[:, None]).sum(1) / n
        delta, tot = b_mean - mean, count + n
        var *= count / tot
        var += b_var * (n / tot) + np.square(delta) * (count * n / tot / tot)
        mean += delta * (n / tot)
        count[...] = tot

    def normalize_np(self, x, seed=None):
        """x [N, B, obs_dim] with each seed's statistics, or with seed=n one observation [obs_dim] of seed n."""
        mean, var = (self.mean.numpy()[:, None], self.var.numpy()[:, None]) if seed is None else (self.mean.numpy()[seed], self.var.numpy()[seed])
        return np.clip((x - mean) / np.sqrt(var + self.eps), -self.clip, self.clip).astype(np.float32)


class Agent(nn.Module):
    """N independent agents, one per seed, stacked on a leading dim: actor and critic act on *normalized* observations
    x = obs_norm(obs) [N, B, obs_dim] (attacks perturb x). N = 1 is a single-seed run; slicing every tensor at [n]
    gives seed n's agent in the single-seed checkpoint layout (seed_state_dict)."""

    def __init__(self, obs_dim, act_dim, args, generators):
        """generators: one torch.Generator per seed; the init draws from it (the run then goes on drawing from it)."""
        super().__init__()
        self.obs_norm = ObsNormalizer(obs_dim, len(generators), args.obs_clip)
        self.critic = MLP((obs_dim, *args.hidden_sizes, 1), args.activation, 1.0, generators)
        self.actor = Actor((obs_dim, *args.hidden_sizes, act_dim), args.activation, args.init_std, generators)

    def get_value(self, x, seed=None):
        return self.critic(x, seed)

    def get_action_and_value(self, x, action):
        action_mean = self.actor(x)
        log_std = self.actor.log_std.unsqueeze(1)
        # Normal log-prob and entropy written out: torch.distributions costs more than the math here
        logprob = -0.5 * (((action - action_mean) * torch.exp(-log_std)) ** 2).sum(2) - (log_std.sum(2) + 0.5 * math.log(2 * math.pi) * action_mean.shape[2])
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(2).expand(action_mean.shape[:2])
        return action, logprob, entropy, self.critic(x)

    def numpy_actor(self):
        """A numpy copy of the mean head for the rollout: one small MLP per env step is ~10x cheaper in numpy."""
        weights = [(layer.weight.detach().numpy().transpose(0, 2, 1).copy(), layer.bias.detach().numpy()[:, None].copy()) for layer in self.actor.layers]
        act = np.tanh if self.actor.act is torch.tanh else (lambda h: np.maximum(h, 0.0))

        def mean(x):
            for w, b in weights[:-1]:
                x = act(x @ w + b)
            return x @ weights[-1][0] + weights[-1][1]

        return mean

    def seed_state_dict(self, n):
        """Seed n's tensors in the single-seed checkpoint layout (e.g. actor.layers.0.weight [out, in])."""
        return {k: v[n] for k, v in self.state_dict().items()}

    def load_seed_state_dict(self, n, state):
        own = self.state_dict()
        with torch.no_grad():
            for k, v in state.items():
                own[k][n].copy_(v)

    def policy(self, n, args):
        """Seed n as a frozen evaluation policy: exactly what eval_attacks.py builds from seed n's checkpoint."""
        from attacks.checkpoint import Policy

        tensors = {k.replace(".", "/", 1): v.clone() for k, v in self.seed_state_dict(n).items()}
        return Policy(tensors, dict(activation=args.activation, obs_clip=args.obs_clip, norm_eps=self.obs_norm.eps))


def compute_gae(rewards, values, ends, next_value, gamma, gae_lambda):
    """GAE over [T, N] arrays. ends[t] = the episode ended at step t (terminated or truncated; truncated steps
    already carry gamma * V(final obs) in their reward). next_value = V of the observation after step T-1."""
    advantages = np.zeros_like(rewards)
    lastgaelam = 0.0
    for t in reversed(range(rewards.shape[0])):
        nextvalues = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        nextnonterminal = 1.0 - ends[t]
        delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
        advantages[t] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
    return advantages


def make_actor_vjp(actor):
    """vjp(x) -> (the actor's mean head at x, a function mapping d(objective)/d(mean) to d(objective)/dx), backpropagated
    by hand through the MLP with the weights taken once per inner loop. The inner loops need input gradients only: at
    minibatch size this costs a third of an autograd graph per step and never touches a parameter's .grad (tests check
    it against torch.autograd.grad)."""
    layers = [(layer.weight.transpose(1, 2).contiguous(), layer.bias.unsqueeze(1), layer.weight) for layer in actor.layers]
    if actor.act is torch.tanh:
        act_backward = torch.ops.aten.tanh_backward  # (g, h) -> g * (1 - h^2), h = tanh(z)
    else:
        act_backward = lambda g, h: torch.ops.aten.threshold_backward(g, h, 0)  # g * (h > 0), h = relu(z)

    def vjp(x):  # x [N, B, obs_dim]: seed n's rows through seed n's actor
        hs = [x]
        for w_t, b, _ in layers[:-1]:
            hs.append(actor.act(torch.baddbmm(b, hs[-1], w_t)))

        def backward(g):
            for (_, _, w), h in zip(layers[:0:-1], hs[:0:-1]):
                g = act_backward(torch.bmm(g, w), h)
            return torch.bmm(g, layers[0][2])

        return torch.baddbmm(layers[-1][1], hs[-1], layers[-1][0]), backward

    return vjp


def sgld_kl_attack(agent, x, eps, steps=10, step_size=0.1, temperature=1e-5, generators=None):
    """x_hat = argmax_{|x_hat - x|_inf <= eps} D(x_hat) for every seed's minibatch x [N, B, obs_dim], with SA-PPO's
    objective and SGLD (its code's get_state_kl_bound_sgld): D = mean over the minibatch of sum(((mean(x_hat) - mean(x))
    / std)^2), twice the Gaussian KL(pi(.|x) || pi(.|x_hat)) (both share the state-independent std). D is flat at
    x_hat = x, so the start is x + step * sign(N(0, 1)); then `steps` steps delta += step * sign(dD/dx_hat +
    sqrt(2 step beta) / (k + 2) * N(0, 1)), each projected onto the ball (no re-clip to +-obs_clip); step = step_size *
    eps, beta = temperature. Seed n draws from generators[n]. Returns x_hat (a constant: no autograd graph) and each
    seed's minibatch-mean KL (D / 2) at the start and at x_hat, [N]."""
    step = step_size * eps
    with torch.no_grad():
        mean0 = agent.actor(x)
        inv_var = torch.exp(-2 * agent.actor.log_std).unsqueeze(1)
        draw = lambda shape: torch.stack([torch.randn(shape, generator=g) for g in generators or [None] * x.shape[0]])
        delta = step * draw(x.shape[1:]).sign()
        noise = draw((steps, *x.shape[1:]))
        vjp = make_actor_vjp(agent.actor)
        for k in range(steps):
            mean, backward = vjp(x + delta)
            if k == 0:
                kl_start = 0.5 * ((mean - mean0) ** 2 * inv_var).sum(2).mean(1)
            grad = backward((mean - mean0) * inv_var * (2 / x.shape[1]))  # dD/dx_hat: the noise is scaled against it
            ascent = grad.add_(noise[:, k], alpha=math.sqrt(2 * step * temperature) / (k + 2)).sign_()
            delta = delta.add_(ascent, alpha=step).clamp_(-eps, eps)
        kl_end = 0.5 * ((agent.actor(x + delta) - mean0) ** 2 * inv_var).sum(2).mean(1)
        return x + delta, kl_start, kl_end


def kl_regularizer(agent, x, x_hat):
    """Each seed's SA-PPO regularizer [N], as SA-PPO's code computes it: the minibatch mean of sum(((mean(x_hat) - mean(x)) / std)^2), twice the
    Gaussian KL(pi(.|x) || pi(.|x_hat)) in value and gradient (so kappa means what SA-PPO's robust_ppo_reg means). mean(x)
    is detached; gradients reach the mean head through x_hat and the log-std through std (SA-PPO does not detach it).
    x_hat is a constant."""
    with torch.no_grad():
        mean0 = agent.actor(x)
    return (((agent.actor(x_hat) - mean0) * torch.exp(-agent.actor.log_std).unsqueeze(1)) ** 2).sum(2).mean(1)


@functools.lru_cache(maxsize=None)
def git_commit():
    """The commit the run started from (called once at start-up, then cached), "-dirty" if tracked .py files differ."""
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "*.py"], cwd=here, capture_output=True, timeout=10).returncode != 0
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except Exception:
        return None


def sparsity_at(step, total_steps, args):
    """The cubic schedule of Zhu & Gupta (2017) over optimizer steps: 0 until --burn-in, --target-sparsity from
    --prune-end on, s_f (1 - (1 - p)^3) between (p the fraction of the way)."""
    progress = min(1.0, max(0.0, (step / total_steps - args.burn_in) / (args.prune_end - args.burn_in)))
    return args.target_sparsity * (1.0 - (1.0 - progress) ** 3)


def scores_needed(step, total_steps, args):
    """Whether the gradient of optimizer step `step` (1-based) feeds a mask update that can change the masks: the next
    update (the first multiple of --prune-interval from `step` on) comes after --burn-in and the schedule rises to it."""
    update = -(-step // args.prune_interval) * args.prune_interval
    return update / total_steps > args.burn_in and sparsity_at(update, total_steps, args) > sparsity_at(update - args.prune_interval, total_steps, args)


def prunable_layers(agent, args):
    """(state-dict name, layer) of the layers whose weights are pruned: the hidden layers of --prune-target, and their
    output layers with --prune-output-layer. Biases and the log-std are never pruned."""
    out = []
    for net in ("actor", "critic"):
        if args.prune_target in (net, "both"):
            layers = getattr(agent, net).layers
            out += [(f"{net}.layers.{i}.weight", layer) for i, layer in enumerate(layers) if args.prune_output_layer or i < len(layers) - 1]
    return out


def erk_densities(shapes, density):
    """Erdos-Renyi-Kernel per-layer densities (Evci et al. 2020) whose size-weighted mean is `density`: density_l is
    proportional to (n_out + n_in) / (n_out * n_in); a layer that would exceed 1 stays dense and the scale is re-solved
    over the others."""
    dense = set()
    while True:
        free = [j for j in range(len(shapes)) if j not in dense]
        budget = density * sum(o * i for o, i in shapes) - sum(shapes[j][0] * shapes[j][1] for j in dense)
        raw = {j: (shapes[j][0] + shapes[j][1]) / (shapes[j][0] * shapes[j][1]) for j in free}
        scale = budget / sum(raw[j] * shapes[j][0] * shapes[j][1] for j in free)
        over = [j for j in free if scale * raw[j] > 1]
        if not over:
            return [1.0 if j in dense else scale * raw[j] for j in range(len(shapes))]
        dense.update(over)


def update_masks(masks, scores, sparsity, method):
    """New masks [N, out, in] (1 = kept) for one sparsity: per layer and seed, the round(sparsity_l * numel) lowest
    scores are pruned, read off the k-th smallest score (torch.kthvalue, linear time); where ties at that value would
    prune more than k, torch.topk picks them, as torch.nn.utils.prune.l1_unstructured does. Nested for every method but
    magnitude_ste: a pruned weight scores -inf, so it stays pruned, and a layer already at its k is unchanged.
    random: ERK per-layer sparsities; else uniform."""
    per_layer = [1 - d for d in erk_densities([m.shape[1:] for m in masks], 1 - sparsity)] if method == "random" else [sparsity] * len(masks)
    new = []
    for mask, score, layer_sparsity in zip(masks, scores, per_layer):
        k, numel = round(layer_sparsity * mask[0].numel()), mask[0].numel()
        pruned = mask.flatten(1) == 0
        if method != "magnitude_ste" and bool((pruned.sum(1) == k).all()):
            new.append(mask.clone())
            continue
        flat = score.flatten(1).masked_fill(pruned, -math.inf) if method != "magnitude_ste" else score.flatten(1)
        kept = torch.ones_like(flat)
        if k > 0:
            kept = (flat > flat.kthvalue(k, dim=1, keepdim=True).values).to(flat.dtype)
            for row in (kept.sum(1) != numel - k).nonzero().flatten().tolist():  # ties at the threshold
                kept[row] = 1.0
                kept[row, torch.topk(flat[row], k, largest=False).indices] = 0.0
        new.append(kept.view_as(mask))
    return new


def lipschitz_surrogate(weights):
    """Per seed [N]: prod over the layers of min(||W||_F, sqrt(||W||_1 ||W||_inf)), the certified surrogate of the
    network's Lipschitz constant (arXiv 2510.12939, Theorem 1; tanh and relu are 1-Lipschitz); weights [N, out, in]."""
    out = torch.ones(weights[0].shape[0], dtype=torch.float64)
    for w in weights:
        w = w.detach().double().abs()
        out = out * torch.minimum(w.flatten(1).norm(dim=1), (w.sum(1).amax(1) * w.sum(2).amax(1)).sqrt())
    return out


def save_checkpoint(path, agent, n, args, global_step, epsilon=None, resume_state=None, prune=None):
    """Seed n's agent as one .safetensors file (docs/checkpoint.md), written to a temp file and renamed: a crash never
    leaves half a model. args: seed n's (its own --seed). resume_state = (tensors, dict) from training_state(): stored
    under resume/ and the metadata key `resume`. prune = (masks {name: [out, in]}, dict): the masks under prune/{name},
    the dict under the metadata's `prune`."""
    from safetensors.torch import save_file

    tensors = {k.replace(".", "/", 1): v.detach().contiguous().clone() for k, v in agent.seed_state_dict(n).items()}
    meta = dict(
        format=1, script=os.path.basename(__file__), env_id=args.env_id, obs_dim=agent.actor.layers[0].in_features,
        act_dim=agent.actor.layers[-1].out_features, hidden_sizes=list(args.hidden_sizes), activation=args.activation,
        obs_clip=args.obs_clip, norm_eps=agent.obs_norm.eps, epsilon=epsilon, global_step=int(global_step),
        args={k: v for k, v in asdict(args).items() if k != "resume"}, git_commit=git_commit(),
    )
    if prune is not None:
        tensors.update({f"prune/{name}": mask.contiguous().clone() for name, mask in prune[0].items()})
        meta["prune"] = prune[1]
    metadata = {"robust_rl": json.dumps(meta)}
    if resume_state is not None:
        tensors.update({f"resume/{k}": v.contiguous().clone() for k, v in resume_state[0].items()})
        metadata["resume"] = json.dumps(resume_state[1])
    tmp = f"{path}.tmp{os.getpid()}"
    save_file(tensors, tmp, metadata=metadata)
    os.chmod(tmp, 0o666 & ~UMASK)  # safetensors creates 0600; a checkpoint is as readable as the run's other files
    os.replace(tmp, path)


UMASK = os.umask(0o022)
os.umask(UMASK)
# derived physics that gymnasium's MuJoCo envs read before their next mj_step (Ant's and Humanoid's "position before"
# come from xpos/xipos of the previous step); mj_getState does not hold them, so a resumed env would differ without them
MJ_DERIVED = ("xpos", "xipos", "xquat", "cinert", "cvel", "cfrc_ext", "qfrc_actuator", "subtree_com")
# flags that do not change a run's arithmetic: --resume takes them from the new command line, all others from the run
RUNTIME_FLAGS = ("save_model", "save_every", "eval_episodes", "progress", "track", "wandb_project_name", "wandb_entity", "wandb_group")


def training_state(n, loop, optimizer, generator, rng, envs, group):
    """What --resume needs for seed n beyond its weights and normalizer (docs/training.md): the next iteration, its slice
    of Adam's state, its RNG streams (numpy for the rollout noise, torch for minibatch order and inner loops), its envs
    mid-episode (MuJoCo's integration state with the solver's warm start, the derived quantities above, the time-limit
    counter and the reset RNG), its reward filter and episode counters; `group` = the checkpoints of the run's seeds,
    relative to this one's folder. Returns (tensors, a JSON-able dict)."""
    import mujoco

    opt = optimizer.state_dict()
    tensors = {f"adam/{i}/{k}": v if k == "step" else v[n] for i, state in opt["state"].items() for k, v in state.items()}
    tensors.update(torch_rng=generator.get_state(), next_obs=torch.from_numpy(loop["next_obs_raw"][n].copy()),
                   ret_acc=torch.from_numpy(loop["ret_acc"][n].copy()), ep_return=torch.from_numpy(loop["ep_return"][n].copy()),
                   ep_length=torch.from_numpy(loop["ep_length"][n].copy()),
                   ret_stats=torch.tensor([loop["ret_mean"][n], loop["ret_var"][n], loop["ret_count"][n]], dtype=torch.float64))
    env_meta = []
    for i, env in enumerate(envs):
        u = env.unwrapped
        physics = np.empty(mujoco.mj_stateSize(u.model, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(u.model, u.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
        tensors[f"env/{i}/physics"] = torch.from_numpy(physics)
        tensors.update({f"env/{i}/{name}": torch.from_numpy(getattr(u.data, name).copy()) for name in MJ_DERIVED})
        env_meta.append(dict(elapsed_steps=time_limit(env)._elapsed_steps, np_random=u.np_random.bit_generator.state))
    meta = dict(iteration=loop["iteration"], global_step=int(loop["global_step"]), np_rng=rng.bit_generator.state, envs=env_meta,
                adam_groups=opt["param_groups"], recent_returns=[float(r) for r in loop["recent_returns"][n][-10:]],
                wandb_id=loop["wandb_ids"][n], group=group)
    return tensors, meta


def restore_training_state(resume, agent, optimizer, generators, rngs, envs):
    """The inverse of training_state() for every seed of the run; returns the loop's own variables."""
    import mujoco

    seeds = resume["seeds"]
    adam = {}
    for i in range(sum(len(group["params"]) for group in seeds[0]["meta"]["adam_groups"])):
        if f"adam/{i}/step" in seeds[0]["tensors"]:
            adam[i] = {"step": seeds[0]["tensors"][f"adam/{i}/step"]}
            adam[i].update({k: torch.stack([s["tensors"][f"adam/{i}/{k}"] for s in seeds]) for k in ("exp_avg", "exp_avg_sq")})
    optimizer.load_state_dict({"state": adam, "param_groups": seeds[0]["meta"]["adam_groups"]})
    for n, s in enumerate(seeds):
        tensors, meta = s["tensors"], s["meta"]
        agent.load_seed_state_dict(n, s["weights"])
        generators[n].set_state(tensors["torch_rng"])
        rngs[n].bit_generator.state = meta["np_rng"]
        for i, (env, env_meta) in enumerate(zip(envs[n], meta["envs"])):
            env.reset()  # gymnasium refuses to step an env that was never reset; the state is then overwritten
            u = env.unwrapped
            mujoco.mj_setState(u.model, u.data, tensors[f"env/{i}/physics"].numpy(), mujoco.mjtState.mjSTATE_INTEGRATION)
            for name in MJ_DERIVED:
                getattr(u.data, name)[...] = tensors[f"env/{i}/{name}"].numpy()
            time_limit(env)._elapsed_steps = env_meta["elapsed_steps"]
            u.np_random.bit_generator.state = env_meta["np_random"]
    stack = lambda key: np.stack([s["tensors"][key].numpy() for s in seeds])
    ret_stats = stack("ret_stats")
    return dict(iteration=seeds[0]["meta"]["iteration"], global_step=seeds[0]["meta"]["global_step"], next_obs_raw=stack("next_obs"),
                ret_acc=stack("ret_acc"), ret_mean=ret_stats[:, 0].copy(), ret_var=ret_stats[:, 1].copy(), ret_count=ret_stats[:, 2].copy(),
                ep_return=stack("ep_return"), ep_length=stack("ep_length"), recent_returns=[list(s["meta"]["recent_returns"]) for s in seeds],
                wandb_ids=[s["meta"]["wandb_id"] for s in seeds])


def time_limit(env):
    while not isinstance(env, gym.wrappers.TimeLimit):
        env = env.env
    return env


def read_resume(path):
    """(robust_rl metadata, resume metadata or None, resume tensors, weights) of a checkpoint, or a one-line error."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        fail(f"--resume {path}: {'is a folder, not a checkpoint' if os.path.isdir(path) else 'no such file'}")
    try:
        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k[len("resume/"):]: f.get_tensor(k) for k in f.keys() if k.startswith("resume/")}
            weights = {k.replace("/", ".", 1): f.get_tensor(k) for k in f.keys() if not k.startswith("resume/")}
        meta = json.loads(header["robust_rl"])
        state = json.loads(header["resume"]) if "resume" in header else None
    except Exception as e:
        fail(f"--resume {path}: not a readable robust-rl checkpoint ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})")
    if meta.get("script") != os.path.basename(__file__):
        fail(f"--resume {path}: written by {meta.get('script')}; resume it with that script")
    if state is None:
        fail(f"--resume {path}: holds no training state (a copied or pre-resume checkpoint, e.g. from zoo/); start a new run instead")
    return meta, state, tensors, weights


def load_resume(cli):
    """--resume PATH (any seed's checkpoint of a run): the run's Args (RUNTIME_FLAGS from this command line; any other
    flag given must match the run's) and the saved state of all its seeds. Every problem is a one-line error."""
    meta, state, _, _ = read_resume(cli.resume)
    folder = os.path.dirname(cli.resume)
    paths = [os.path.normpath(os.path.join(folder, p)) for p in state["group"]]
    seeds = []
    for path in paths:
        m, s, tensors, weights = read_resume(path)
        if s["iteration"] != state["iteration"] or m["args"]["num_seeds"] != len(paths):
            fail(f"--resume {cli.resume}: {path} is at another iteration or from another run")
        masks = {k[len("prune."):]: v for k, v in weights.items() if k.startswith("prune.")}
        weights = {k: v for k, v in weights.items() if not k.startswith("prune.")}
        seeds.append(dict(path=path, meta=s, tensors=tensors, weights=weights, args=m["args"], masks=masks))
    names = {f.name for f in dataclasses.fields(Args)} - {"resume", "batch_size", "minibatch_size", "num_iterations"}
    stored = {k: tuple(v) if isinstance(v, list) else v for k, v in seeds[0]["args"].items() if k in names}
    default = Args()
    for name in sorted(names - set(RUNTIME_FLAGS)):
        given = getattr(cli, name)
        if given != getattr(default, name) and given != stored.get(name, getattr(default, name)):
            fail(f"--resume restores the run's flags: --{name.replace('_', '-')} {given} differs from the run's {stored.get(name)}")
    args = Args(**{**stored, **{k: getattr(cli, k) for k in RUNTIME_FLAGS}, "resume": cli.resume})
    return args, dict(seeds=seeds, paths=paths)


def wandb_labels(args):
    """W&B group and tags: a report groups the seeds of one configuration and compares configurations by tag."""
    # the interval only when not the default, as the grid names its results (magnitude0.5__interval1)
    interval = "" if args.prune_interval == 10 else f"__interval{args.prune_interval}"
    return args.wandb_group or f"{args.env_id}__{args.exp_name}__kappa{args.kappa}__{args.prune_method}{args.target_sparsity}{interval}", [args.exp_name, args.env_id, f"kappa={args.kappa}", f"eps={args.epsilon}", f"prune={args.prune_method}", f"sparsity={args.target_sparsity}", f"interval={args.prune_interval}"]


class Interrupt:
    """SIGINT (Ctrl-C) and SIGTERM (a cluster's preemption) inside the training loop set `signum`: the loop finishes its
    iteration, saves and exits 128 + signum. A second signal, or one outside the loop, exits at once with one line
    (no traceback from inside MuJoCo)."""

    def __init__(self):
        self.signum, self.in_loop, self.saved = None, False, None
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)

    def __call__(self, signum, frame):
        if self.in_loop and self.signum is None:
            self.signum = signum
            print(f"{signal.Signals(signum).name}: finishing this iteration, then saving (again to quit at once)", file=sys.stderr, flush=True)
            return
        where = f"; the last checkpoint is {self.saved}" if self.saved else ""
        print(f"{signal.Signals(signum).name}: exiting without saving{where}", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)


def clip_grad_norm_per_seed(params, max_norm):
    """nn.utils.clip_grad_norm_ applied to each seed's slice of the stacked parameters separately."""
    grads = [p.grad for p in params]
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))


if __name__ == "__main__":
    interrupt = Interrupt()
    quiet_warnings()
    args = tyro.cli(Args)
    resume = None
    if args.resume:
        args, resume = load_resume(args)
    args = resolve_args(args)
    seeds = [args.seed + n for n in range(args.num_seeds)]
    seed_args = [dataclasses.replace(args, seed=seed) for seed in seeds]  # what each seed's checkpoint and logs record
    if resume is None:
        # the folders are created exclusively: two runs started in the same second must not share (and overwrite) a checkpoint
        os.makedirs("runs", exist_ok=True)
        run_dirs = [tempfile.mkdtemp(prefix=f"{args.env_id}__{args.exp_name}__{seed}__{int(time.time())}_", dir="runs") for seed in seeds]
        for run_dir in run_dirs:
            os.chmod(run_dir, 0o777 & ~UMASK)  # mkdtemp makes it private; a run folder is as readable as any output
        ckpt_paths = [f"{run_dir}/{args.exp_name}.safetensors" for run_dir in run_dirs]
    else:  # a resumed run continues in its folders and overwrites the checkpoints it resumed from
        ckpt_paths = resume["paths"]
        run_dirs = [os.path.dirname(path) or "." for path in ckpt_paths]
    run_names = [os.path.basename(os.path.abspath(run_dir)) for run_dir in run_dirs]
    git_commit()  # record the code the run starts from, not the one at save time
    wandb_runs = [None] * args.num_seeds
    if args.track:
        import wandb

        group, tags = wandb_labels(args)
        for n in range(args.num_seeds):  # one W&B run per seed, as from single-seed runs
            wandb_runs[n] = wandb.init(
                project=args.wandb_project_name,
                entity=args.wandb_entity,
                group=group,
                tags=tags,
                config=vars(seed_args[n]),
                name=run_names[n],
                monitor_gym=False,
                save_code=True,
                id=resume["seeds"][n]["meta"]["wandb_id"] if resume else None,
                resume="allow",
                reinit="create_new",
            )
            wandb_runs[n].define_metric("*", step_metric="global_step")
    from torch.utils.tensorboard import SummaryWriter

    # resuming drops what the run logged after its checkpoint (those iterations run again)
    writers = [SummaryWriter(run_dir, purge_step=resume["seeds"][0]["meta"]["global_step"] if resume else None) for run_dir in run_dirs]
    for writer, a in zip(writers, seed_args):
        writer.add_text(
            "hyperparameters",
            "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(a).items()])),
        )

    def log(n, tag, value, step):
        """One scalar of seed n to its TensorBoard run, and to its W&B run with --track."""
        writers[n].add_scalar(tag, value, step)
        if wandb_runs[n] is not None:
            wandb_runs[n].log({tag: value, "global_step": step})

    # TRY NOT TO MODIFY: seeding. Every seed has its own streams (numpy: rollout noise; torch: init, minibatch order),
    # so seed k of a --num-seeds run is the single-seed run with --seed k
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.torch_threads)
    rngs = [np.random.default_rng(seed) for seed in seeds]
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    # env setup: a plain list of envs per seed stepped in a loop (gymnasium's vector-env machinery costs more than a
    # MuJoCo step at num_envs=1); we reset finished episodes ourselves and keep their final observations
    envs = [[make_env(args.env_id, seed + i)() for i in range(args.num_envs)] for seed in seeds]
    obs_dim, act_dim = envs[0][0].observation_space.shape[0], envs[0][0].action_space.shape[0]
    act_low, act_high = envs[0][0].action_space.low, envs[0][0].action_space.high
    N = args.num_seeds

    agent = Agent(obs_dim, act_dim, args, generators)
    optimizer = torch.optim.Adam(
        [{"params": agent.actor.parameters(), "lr": args.learning_rate}, {"params": agent.critic.parameters(), "lr": args.value_learning_rate}],
        eps=1e-5,
        fused=True,  # one kernel per tensor: a third of the default Adam's cost at these sizes; elementwise, so per seed
    )
    base_lrs = [args.learning_rate, args.value_learning_rate]

    # ALGO LOGIC: pruning state. masks [N, out, in] per prunable layer (1 = kept), over T optimizer steps; random pruning
    # ranks by fixed scores from a stream of its own (the run's other draws stay those of --prune-method none)
    prunable = prunable_layers(agent, args) if args.prune_method != "none" else []
    masks = [torch.ones_like(layer.weight) for _, layer in prunable]
    dense = [layer.weight.detach().clone() for _, layer in prunable] if args.prune_method == "magnitude_ste" else []
    saliency = [torch.zeros_like(layer.weight) for _, layer in prunable] if args.prune_method == "saliency" else []
    prune_gens = [torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])) for seed in seeds]
    random_scores = [torch.stack([torch.rand(layer.weight.shape[1:], generator=g) for g in prune_gens]) for _, layer in prunable]
    total_steps, prune_step = args.num_iterations * args.update_epochs * args.num_minibatches, 0
    actor_index = [next((j for j, (_, p) in enumerate(prunable) if p is layer), None) for layer in agent.actor.layers]  # its mask, if pruned
    last_update = None  # the actor's weights before and after the iteration's last mask update that changed a mask

    # ALGO Logic: Storage setup (normalized observations, as the actor saw them) [step, seed, env, ...]
    obs = np.zeros((args.num_steps, N, args.num_envs, obs_dim), dtype=np.float32)
    actions = np.zeros((args.num_steps, N, args.num_envs, act_dim), dtype=np.float32)
    rewards = np.zeros((args.num_steps, N, args.num_envs), dtype=np.float32)
    ends = np.zeros((args.num_steps, N, args.num_envs), dtype=np.float32)

    # TRY NOT TO MODIFY: start the game
    if resume is None:
        start_iteration, global_step = 1, 0
        next_obs_raw = np.stack([np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs_n)]) for seed, envs_n in zip(seeds, envs)])
        ret_acc = np.zeros((N, args.num_envs))  # discounted return, for reward scaling
        ret_mean, ret_var, ret_count = np.zeros(N), np.ones(N), np.full(N, 1e-4)
        ep_return, ep_length = np.zeros((N, args.num_envs)), np.zeros((N, args.num_envs), dtype=np.int64)
        recent_returns = [[] for _ in seeds]
        wandb_ids = [run.id if run is not None else None for run in wandb_runs]
    else:  # exactly where the saved run stopped: weights, normalizer, Adam, RNG streams, envs mid-episode, filters
        state = restore_training_state(resume, agent, optimizer, generators, rngs, envs)
        start_iteration, global_step, next_obs_raw, ret_acc, ret_mean, ret_var, ret_count, ep_return, ep_length, recent_returns, wandb_ids = (
            state[k] for k in ("iteration", "global_step", "next_obs_raw", "ret_acc", "ret_mean", "ret_var", "ret_count", "ep_return", "ep_length", "recent_returns", "wandb_ids")
        )
        if start_iteration > args.num_iterations:
            print(f"{args.resume}: the run already finished at step {global_step}; nothing to resume")
            sys.exit(0)
        prune_step = resume["seeds"][0]["meta"]["prune_step"]
        for n, seed_state in enumerate(resume["seeds"]):
            for i, (name, _) in enumerate(prunable):
                masks[i][n] = seed_state["masks"][name]
                if dense:
                    dense[i][n] = seed_state["tensors"][f"prune/dense/{i}"]
                if saliency:
                    saliency[i][n] = seed_state["tensors"][f"prune/saliency/{i}"]
        print(f"resumed {args.resume} at step {global_step}" + (f" ({N} seeds)" if N > 1 else ""), flush=True)
    start_time, start_step = time.time(), global_step
    prefix = [f"seed {seed}: " if N > 1 else "" for seed in seeds]

    from tqdm import tqdm

    show_bar = sys.stderr.isatty() if args.progress is None else args.progress
    pbar = tqdm(total=args.num_iterations * args.batch_size, initial=global_step, unit="step", unit_scale=True, disable=not show_bar, dynamic_ncols=True)
    interrupt.in_loop = True
    for iteration in range(start_iteration, args.num_iterations + 1):
        # Annealing the rate if instructed to do so.
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = frac * lr
        # ALGO LOGIC: eps schedule, linear from 0 to --epsilon over the first eps_ramp of the iterations, then constant
        eps_t = args.epsilon * min(1.0, iteration / max(1.0, args.eps_ramp * args.num_iterations))

        actor_mean = agent.numpy_actor()
        std = np.exp(agent.actor.log_std.detach().numpy())[:, None]
        noise = np.stack([rng.standard_normal((args.num_steps, args.num_envs, act_dim)) for rng in rngs], 1).astype(np.float32)
        final_obs, final_idx = [], []  # truncated episodes: bootstrap from V(final observation)
        for step in range(0, args.num_steps):
            global_step += args.num_envs
            agent.obs_norm.update(next_obs_raw)
            x = agent.obs_norm.normalize_np(next_obs_raw)
            obs[step] = x

            # ALGO LOGIC: action logic
            action = actor_mean(x) + std * noise[step]
            actions[step] = action

            # TRY NOT TO MODIFY: execute the game and log data.
            clipped = np.clip(action, act_low, act_high)
            for n, envs_n in enumerate(envs):
                for i, env in enumerate(envs_n):
                    o, r, terminated, truncated, _ = env.step(clipped[n, i])
                    ep_return[n, i] += r
                    ep_length[n, i] += 1
                    ret_acc[n, i] = ret_acc[n, i] * args.gamma + r
                    rewards[step, n, i] = r
                    ends[step, n, i] = terminated or truncated
                    if terminated or truncated:
                        if truncated and not terminated:
                            final_obs.append(agent.obs_norm.normalize_np(o, seed=n))
                            final_idx.append((step, n, i))
                        recent_returns[n].append(ep_return[n, i])
                        log(n, "charts/episodic_return", ep_return[n, i], global_step)
                        log(n, "charts/episodic_length", ep_length[n, i], global_step)
                        ep_return[n, i], ep_length[n, i] = 0.0, 0
                        o, _ = env.reset()
                    next_obs_raw[n, i] = o
            # reward scaling: divide by the running std of the discounted return (SA-PPO's RewardFilter), per seed
            b_n = args.num_envs
            b_mean = ret_acc.sum(1) / b_n
            b_var = np.square(ret_acc - b_mean[:, None]).sum(1) / b_n
            delta, tot = b_mean - ret_mean, ret_count + b_n
            ret_var = (ret_var * ret_count + b_var * b_n + delta**2 * ret_count * b_n / tot) / tot
            ret_mean, ret_count = ret_mean + delta * b_n / tot, tot
            rewards[step] = np.clip(rewards[step] / np.sqrt(ret_var[:, None] + 1e-8), -args.reward_clip, args.reward_clip)
            ret_acc[ends[step] > 0] = 0.0

        # values and log-probs for the whole rollout in one batched pass; [seed, step * env]: each seed's batch in the
        # order a single-seed run has it
        with torch.no_grad():
            t_obs = torch.from_numpy(obs.transpose(1, 0, 2, 3).reshape(N, -1, obs_dim))
            t_actions = torch.from_numpy(actions.transpose(1, 0, 2, 3).reshape(N, -1, act_dim))
            _, t_logprobs, _, t_values = agent.get_action_and_value(t_obs, t_actions)
            values = t_values.numpy().reshape(N, args.num_steps, args.num_envs).transpose(1, 0, 2)
            next_value = agent.get_value(torch.from_numpy(agent.obs_norm.normalize_np(next_obs_raw))).numpy().reshape(N, args.num_envs)
            for n in range(N):  # final observations through their own seed's critic
                idx = [j for j, (_, seed_n, _) in enumerate(final_idx) if seed_n == n]
                if idx:
                    final_values = agent.get_value(torch.from_numpy(np.stack([final_obs[j] for j in idx]))[None], seed=n).numpy().reshape(-1)
                    for j, v in zip(idx, final_values):
                        s, _, i = final_idx[j]
                        rewards[s, n, i] += args.gamma * v

        # bootstrap value if not done
        advantages = compute_gae(rewards, values, ends, next_value, args.gamma, args.gae_lambda)
        returns = advantages + values

        # flatten the batch (per seed)
        b_obs = t_obs
        b_logprobs = t_logprobs
        b_actions = t_actions
        b_advantages = torch.from_numpy(advantages.transpose(1, 0, 2).reshape(N, -1))
        b_returns = torch.from_numpy(returns.transpose(1, 0, 2).reshape(N, -1))
        b_values = torch.from_numpy(values.transpose(1, 0, 2).reshape(N, -1))

        # Optimizing the policy and value network: every line below is per seed along dim 0 ([seed, sample, ...])
        clipfracs = []
        seed_rows = torch.arange(N).unsqueeze(1)
        for epoch in range(args.update_epochs):
            b_inds = torch.stack([torch.randperm(args.batch_size, generator=g) for g in generators])  # each seed its own order
            # shuffle once per epoch, then take contiguous slices: one gather per tensor instead of one per minibatch
            e_obs, e_actions, e_logprobs, e_advantages, e_returns, e_values = (
                t[seed_rows, b_inds] for t in (b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values)
            )
            for start in range(0, args.batch_size, args.minibatch_size):
                mb_inds = slice(start, start + args.minibatch_size)

                _, newlogprob, entropy, newvalue = agent.get_action_and_value(e_obs[:, mb_inds], e_actions[:, mb_inds])
                logratio = newlogprob - e_logprobs[:, mb_inds]
                ratio = logratio.exp()

                with torch.no_grad():
                    # calculate approx_kl http://joschu.net/blog/kl-approx.html
                    old_approx_kl = (-logratio).mean(1)
                    approx_kl = ((ratio - 1) - logratio).mean(1)
                    clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean(1))

                mb_advantages = e_advantages[:, mb_inds]
                if args.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean(1, keepdim=True)) / (mb_advantages.std(1, keepdim=True) + 1e-8)

                # Policy loss
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean(1)

                # Value loss
                newvalue = newvalue.squeeze(2)
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - e_returns[:, mb_inds]) ** 2
                    v_clipped = e_values[:, mb_inds] + torch.clamp(newvalue - e_values[:, mb_inds], -args.clip_coef, args.clip_coef)
                    v_loss_clipped = (v_clipped - e_returns[:, mb_inds]) ** 2
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean(1)
                else:
                    v_loss = 0.5 * ((newvalue - e_returns[:, mb_inds]) ** 2).mean(1)

                entropy_loss = entropy.mean(1)
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef

                # ALGO LOGIC: SA-PPO. SGLD finds x_hat maximizing KL(pi(.|x) || pi(.|x_hat)) over the eps_t ball; the
                # policy then minimizes SA-PPO's D = 2 KL there (clean mean detached, x_hat a constant)
                if args.kappa > 0:  # --kappa 0: pruning only, without the inner loop
                    x_hat, kl_start, kl_end = sgld_kl_attack(agent, e_obs[:, mb_inds], eps_t, args.inner_steps, args.inner_step_size, args.sgld_temperature, generators)
                    robust_loss = kl_regularizer(agent, e_obs[:, mb_inds], x_hat)
                    loss = loss + args.kappa * robust_loss
                else:
                    kl_start = kl_end = robust_loss = torch.full((N,), math.nan)

                optimizer.zero_grad()
                loss.sum().backward()  # the seeds' parameters are disjoint: each seed's gradient is that of its own loss
                if saliency and scores_needed(prune_step + 1, total_steps, args):
                    # first-order Taylor scores, summed over the minibatches before a mask update that can change the
                    # masks (not in burn-in, not once the target is reached), of the gradient before clipping
                    torch._foreach_add_(saliency, [(layer.weight.detach() * layer.weight.grad).abs() for _, layer in prunable])
                if args.max_grad_norm > 0:
                    clip_grad_norm_per_seed(agent.actor.parameters(), args.max_grad_norm)
                    clip_grad_norm_per_seed(agent.critic.parameters(), args.max_grad_norm)
                for w, (_, layer) in zip(dense, prunable):  # straight-through: the gradient taken at W * M steps the dense W
                    layer.weight.data.copy_(w)
                optimizer.step()

                # ALGO LOGIC: pruning (Algorithm 1, lines 9-11): every --prune-interval steps after burn-in, masks for
                # the scheduled sparsity; then W <- W * M after every step
                prune_step += 1
                for w, (_, layer) in zip(dense, prunable):
                    w.copy_(layer.weight.detach())
                if prunable and prune_step % args.prune_interval == 0:
                    if prune_step / total_steps > args.burn_in:
                        if args.prune_method in ("magnitude", "magnitude_ste"):
                            scores = [w.abs() for w in dense] if dense else [layer.weight.detach().abs() for _, layer in prunable]
                        else:
                            scores = saliency if saliency else random_scores
                        new_masks = update_masks(masks, scores, sparsity_at(prune_step, total_steps, args), args.prune_method)
                        if any(not torch.equal(old, new) for old, new in zip(masks, new_masks)):
                            # the actor before and after this update, from the same weights (Theorem 1: pruning does not
                            # raise the surrogate); its surrogates are taken once, for the iteration's last such update
                            current = [w for w in dense] if dense else [layer.weight.detach() for _, layer in prunable]
                            last_update = [[current[j] * m[j] if j is not None else layer.weight.detach().clone() for j, layer in zip(actor_index, agent.actor.layers)]
                                           for m in (masks, new_masks)]
                            for old, new, (_, layer) in zip(masks, new_masks, prunable):
                                # the newly pruned weights' Adam moments are zeroed: a weight that regrows (magnitude_ste)
                                # starts afresh, not on the momentum it had before it was pruned
                                for key in ("exp_avg", "exp_avg_sq"):
                                    optimizer.state[layer.weight][key].mul_(1 - old * (1 - new))
                                old.copy_(new)
                    for score in saliency:  # the scores of one interval
                        score.zero_()
                if prunable:
                    with torch.no_grad():
                        torch._foreach_mul_([layer.weight for _, layer in prunable], masks)  # one dispatch for all layers

            if args.target_kl is not None and approx_kl.item() > args.target_kl:
                break
        # the schedule runs on the nominal step count: minibatches that --target-kl skipped count as taken
        prune_step = iteration * args.update_epochs * args.num_minibatches

        y_pred, y_true = b_values.numpy(), b_returns.numpy()
        var_y = np.var(y_true, axis=1)
        explained_var = np.where(var_y == 0, np.nan, 1 - np.var(y_true - y_pred, axis=1) / np.where(var_y == 0, 1, var_y))

        # TRY NOT TO MODIFY: record rewards for plotting purposes
        sps = int((global_step - start_step) * N / (time.time() - start_time))
        metrics = {
            "charts/learning_rate": optimizer.param_groups[0]["lr"],
            "losses/value_loss": v_loss.detach(),
            "losses/policy_loss": pg_loss.detach(),
            "losses/entropy": entropy_loss.detach(),
            "losses/old_approx_kl": old_approx_kl,
            "losses/approx_kl": approx_kl,
            "losses/clipfrac": torch.stack(clipfracs).mean(0),
            "losses/explained_variance": explained_var,
            "robust/eps": eps_t,
            "robust/kappa": args.kappa,
            "robust/kl_start": kl_start,
            "robust/kl_end": kl_end,
            "robust/kl": kl_end,
            "robust/loss": robust_loss.detach(),
            "prune/sparsity": sum((1 - m).flatten(1).sum(1) for m in masks) / max(1, sum(m[0].numel() for m in masks)) if masks else 0.0,
            **{f"prune/sparsity_{name.removesuffix('.weight')}": 1 - m.flatten(1).mean(1) for (name, _), m in zip(prunable, masks)},
            "prune/surrogate_masked": lipschitz_surrogate([layer.weight for layer in agent.actor.layers]),
            **({"prune/surrogate_dense": lipschitz_surrogate(last_update[0]), "prune/surrogate_pruned": lipschitz_surrogate(last_update[1])} if last_update else {}),
            "charts/SPS": sps,
        }
        for tag, value in metrics.items():  # per-seed tensors and arrays go to their seed's run, numbers to all
            values = value.tolist() if isinstance(value, (torch.Tensor, np.ndarray)) else [value] * N
            for n in range(N):
                log(n, tag, values[n], global_step)
        last_update = None
        recent = [float(np.mean(r[-10:])) if r else float("nan") for r in recent_returns]
        pbar.update(args.batch_size)
        pbar.set_postfix(ret=f"{np.mean(recent):.0f}", sps=sps, refresh=False)
        if not show_bar and (iteration == 1 or iteration % max(1, args.num_iterations // 20) == 0 or iteration == args.num_iterations):
            eta = (args.num_iterations - iteration) * args.batch_size * N / max(sps, 1)
            seeds_note = f" (mean of {N} seeds, {min(recent):.1f} to {max(recent):.1f})" if N > 1 else ""
            print(f"iter {iteration}/{args.num_iterations} step {global_step} return(last10) {np.mean(recent):.1f}{seeds_note} SPS {sps} ETA {eta/60:.1f} min", flush=True)
        if args.save_model and ((args.save_every and iteration % args.save_every == 0) or interrupt.signum or iteration == args.num_iterations):
            loop = dict(iteration=iteration + 1, global_step=global_step, next_obs_raw=next_obs_raw, ret_acc=ret_acc, ret_mean=ret_mean, ret_var=ret_var,
                        ret_count=ret_count, ep_return=ep_return, ep_length=ep_length, recent_returns=recent_returns, wandb_ids=wandb_ids)
            for n in range(N):
                group = [os.path.relpath(path, os.path.dirname(ckpt_paths[n])) for path in ckpt_paths]
                state = training_state(n, loop, optimizer, generators[n], rngs[n], envs[n], group)
                state[0].update({f"prune/dense/{i}": w[n] for i, w in enumerate(dense)} | {f"prune/saliency/{i}": sc[n] for i, sc in enumerate(saliency)})
                state[1]["prune_step"] = prune_step
                prune = ({name: m[n] for (name, _), m in zip(prunable, masks)},
                         dict(method=args.prune_method, target_sparsity=args.target_sparsity, sparsity=float(metrics["prune/sparsity"][n]) if masks else 0.0, step=prune_step))
                save_checkpoint(ckpt_paths[n], agent, n, seed_args[n], global_step, epsilon=args.epsilon, resume_state=state, prune=prune)
            interrupt.saved = ckpt_paths[0] if N == 1 else f"{ckpt_paths[0]} and the other {N - 1} seeds'"
        if interrupt.signum:
            pbar.close()
            for writer in writers:
                writer.close()
            saved = f"saved {interrupt.saved}; resume with --resume {ckpt_paths[0]}" if args.save_model else "nothing saved (--no-save-model)"
            print(f"interrupted at step {global_step}; {saved}", file=sys.stderr, flush=True)
            sys.exit(128 + interrupt.signum)
    interrupt.in_loop = False
    pbar.close()

    if args.save_model:
        for n in range(N):
            print(f"{prefix[n]}model saved to {ckpt_paths[n]}")
    if args.eval_episodes > 0:
        from eval_attacks import evaluate

        for n, seed in enumerate(seeds):  # seed n's frozen policy, exactly as eval_attacks.py loads its checkpoint
            episodic_returns = evaluate(agent.policy(n, args), args.env_id, episodes=args.eval_episodes, seed=seed + 10_000)
            for idx, episodic_return in enumerate(episodic_returns):
                writers[n].add_scalar("eval/episodic_return", episodic_return, idx)
            log(n, "eval/natural_return", float(np.mean(episodic_returns)), global_step)
            print(f"{prefix[n]}eval: natural return {np.mean(episodic_returns):.1f} +- {np.std(episodic_returns):.1f} over {args.eval_episodes} episodes")
    if args.eval_episodes > 0 and args.epsilon is not None:
        # the attacks that need no training, at the env's budget (all six: eval_attacks.py --attacks all)
        from attacks.critic import CriticAttack
        from attacks.mad import MADAttack
        from attacks.random import RandomAttack

        for n, seed in enumerate(seeds):
            policy = agent.policy(n, args)
            for attack in (RandomAttack(policy, args.epsilon), CriticAttack(policy, args.epsilon), MADAttack(policy, args.epsilon)):
                attacked = evaluate(policy, args.env_id, episodes=args.eval_episodes, seed=seed + 10_000, attack=attack)
                log(n, f"eval/{attack.name}_return", float(np.mean(attacked)), global_step)
                print(f"{prefix[n]}eval: {attack.name} return {np.mean(attacked):.1f} +- {np.std(attacked):.1f} (eps {args.epsilon})")

    for envs_n in envs:
        for env in envs_n:
            env.close()
    for writer, run in zip(writers, wandb_runs):
        writer.close()
        if run is not None:
            run.finish()
