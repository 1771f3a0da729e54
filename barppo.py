# docs: README.md#barppopy
"""BAR-PPO: bilevel adversarially robust PPO (BARPO with the KL surrogate), a fork of ppo_continuous.py.

Paper: "On the Tension Between Optimality and Adversarial Robustness in Policy Optimization" (arXiv 2512.01228),
Sec. 4.2 and Appendix F.2-F.3, Algorithm 3 (BAR-PPO). Per iteration, for every normalized observation x of the batch:
    inner  x_hat = argmax_{|x_hat - x|_inf <= eps_t} KL(pi(.|x) || pi(.|x_hat))        SGLD, 10 steps of eps_t/10, beta 1e-5
    outer  L_bar = -mean g(pi(a|x_hat) / pi_old(a|x), A) - ent_coef * H,   g(r, A) = min(r A, clip(r, 1-c, 1+c) A)
    loss   PPO loss at the clean states (no entropy) + kappa * L_bar       (--no-guidance, "BARPO w/o g": L_bar + value loss)
The inner loop is SA-PPO's SGLD routine (start x + (eps_t/10) sign(N(0,1)), noise inside the sign, beta 1e-5), which the
paper names and its author's CAR-RL code uses.
The inner problem is solved for every minibatch with the current policy pi_theta (Algorithm 3, line 8 writes the KL with
pi_theta, not the collecting pi_theta_t; "in a batch" = vectorized over the minibatch, as in the SA-PPO code the paper
builds on); x_hat is a constant in the outer gradient (no second-order terms); eps_t ramps linearly from 0 to --epsilon
over the first 75% of the iterations (App. F.3: 732 of 976); kappa per env from Table 8.

Reproduce the headline number (Table 2, HalfCheetah eps 0.15: natural 4837, worst-case attack 3181; median of 17 seeds):
    python barppo.py --env-id HalfCheetah-v4 --kappa 0.3
    python eval_attacks.py --model runs/HalfCheetah-v4__barppo__1__*/barppo.safetensors
Measured here (benchmark/RESULTS.md, 2M steps, median of 3 seeds): kappa 0.3 gives 5606 natural / -378 worst (PA-AD),
not the paper's row; --kappa 1.0 gives 3997 / 3276, the paper's kappa-1.0 row (Table 8: 3843 / 3436).
Ctrl-C or SIGTERM saves the run and prints how to continue it exactly (docs/training.md):
    python barppo.py --resume runs/HalfCheetah-v4__barppo__1__*/barppo.safetensors
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
# Robust-loss weight kappa per env: the BAR-PPO agents of the paper (Table 8 / Table 2); 0.3 elsewhere (its most common pick).
KAPPA_DEFAULTS = {"Hopper": 0.3, "Walker2d": 0.3, "HalfCheetah": 0.3, "Ant": 1.0}
GENERIC_KAPPA = 0.3


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
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
    hidden_sizes: tuple[int, ...] = (64, 64)
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
    """weight of the robust loss L_bar (default per env, paper Table 8: 0.3 Hopper/Walker2d/HalfCheetah, 1.0 Ant, 0.3 otherwise; unused with --no-guidance)"""
    guidance: bool = True
    """SPO guidance: PPO loss at the clean states + kappa * L_bar ("BARPO"); --no-guidance: L_bar alone ("BARPO w/o g")"""
    inner_steps: int = 10
    """SGLD steps of the inner maximization"""
    inner_step_size: float = 0.1
    """SGLD step size as a fraction of the current eps (0.1: eps/10)"""
    sgld_temperature: float = 1e-5
    """SGLD inverse temperature beta (SA-PPO's 1e-5): step k adds sqrt(2 * step * beta) / (k + 2) * N(0, 1) to the gradient"""

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
    for name in ("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "torch_threads"):
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("learning_rate", "value_learning_rate", "init_std", "obs_clip", "reward_clip"):
        if not getattr(args, name) > 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 < args.gamma <= 1 or not 0 <= args.gae_lambda <= 1:
        fail(f"--gamma must be in (0, 1] and --gae-lambda in [0, 1], got {args.gamma}, {args.gae_lambda}")
    if args.save_every < 0 or args.eval_episodes < 0 or args.max_grad_norm < 0 or not 0 <= args.ent_coef < math.inf:
        fail("--save-every, --eval-episodes, --max-grad-norm and --ent-coef must be >= 0")
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
        env.action_space.seed(seed)
        return env

    return thunk


def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class MLP(nn.Module):
    """Linear layers in `layers` (the checkpoint names them layers.{i}); the last one has no activation."""

    def __init__(self, sizes, activation, out_std):
        super().__init__()
        n = len(sizes) - 1
        self.layers = nn.ModuleList([layer_init(nn.Linear(sizes[i], sizes[i + 1]), out_std if i == n - 1 else np.sqrt(2)) for i in range(n)])
        self.act = torch.tanh if activation == "tanh" else torch.relu

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)


class Actor(MLP):
    """Gaussian policy: MLP mean head and a state-independent log-std."""

    def __init__(self, sizes, activation, init_std):
        super().__init__(sizes, activation, out_std=0.01)
        self.log_std = nn.Parameter(torch.full((sizes[-1],), math.log(init_std)))


class ObsNormalizer(nn.Module):
    """Running mean/var of raw observations (buffers, saved with the agent); frozen unless update() is called."""

    def __init__(self, obs_dim, clip=10.0, eps=1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    def update(self, x):
        """Parallel-variance update with a numpy batch [B, obs_dim] (Chan et al., as gymnasium's RunningMeanStd);
        sums instead of np.mean/np.var, whose Python overhead dominates at one observation per step."""
        mean, var, count = self.mean.numpy(), self.var.numpy(), self.count.numpy()
        n = x.shape[0]
        b_mean = x.sum(0) / n
        b_var = np.square(x - b_mean).sum(0) / n
        delta, tot = b_mean - mean, count + n
        var *= count / tot
        var += b_var * (n / tot) + np.square(delta) * (count * n / tot / tot)
        mean += delta * (n / tot)
        count[...] = tot

    def normalize_np(self, x):
        return np.clip((x - self.mean.numpy()) / np.sqrt(self.var.numpy() + self.eps), -self.clip, self.clip).astype(np.float32)

    def forward(self, x):
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + self.eps), -self.clip, self.clip).float()


class Agent(nn.Module):
    """Actor and critic act on *normalized* observations x = obs_norm(obs); attacks perturb x."""

    def __init__(self, obs_dim, act_dim, args):
        super().__init__()
        self.obs_norm = ObsNormalizer(obs_dim, args.obs_clip)
        self.critic = MLP((obs_dim, *args.hidden_sizes, 1), args.activation, out_std=1.0)
        self.actor = Actor((obs_dim, *args.hidden_sizes, act_dim), args.activation, args.init_std)

    def get_value(self, x):
        return self.critic(x)

    def get_action_and_value(self, x, action=None):
        action_mean = self.actor(x)
        if action is None:
            action = action_mean + self.actor.log_std.exp() * torch.randn_like(action_mean)
        # Normal log-prob and entropy written out: torch.distributions costs more than the math here
        logprob = -0.5 * (((action - action_mean) * torch.exp(-self.actor.log_std)) ** 2).sum(1) - (self.actor.log_std.sum() + 0.5 * math.log(2 * math.pi) * action_mean.shape[1])
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.actor.log_std).sum().expand(action_mean.shape[0])
        return action, logprob, entropy, self.critic(x)

    def numpy_actor(self):
        """A numpy copy of the mean head for the rollout: one small MLP per env step is ~10x cheaper in numpy."""
        weights = [(layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy()) for layer in self.actor.layers]
        act = np.tanh if self.actor.act is torch.tanh else (lambda h: np.maximum(h, 0.0))

        def mean(x):
            for w, b in weights[:-1]:
                x = act(x @ w + b)
            return x @ weights[-1][0] + weights[-1][1]

        return mean


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
    layers = [(layer.weight.T.contiguous(), layer.bias, layer.weight) for layer in actor.layers]
    if actor.act is torch.tanh:
        act_backward = torch.ops.aten.tanh_backward  # (g, h) -> g * (1 - h^2), h = tanh(z)
    else:
        act_backward = lambda g, h: torch.ops.aten.threshold_backward(g, h, 0)  # g * (h > 0), h = relu(z)

    def vjp(x):
        hs = [x]
        for w_t, b, _ in layers[:-1]:
            hs.append(actor.act(torch.addmm(b, hs[-1], w_t)))

        def backward(g):
            for (_, _, w), h in zip(layers[:0:-1], hs[:0:-1]):
                g = act_backward(g @ w, h)
            return g @ layers[0][2]

        return torch.addmm(layers[-1][1], hs[-1], layers[-1][0]), backward

    return vjp


def sgld_kl_attack(agent, x, eps, steps=10, step_size=0.1, temperature=1e-5, generator=None):
    """x_hat = argmax_{|x_hat - x|_inf <= eps} D(x_hat), batched over the rows of x, with SA-PPO's objective and SGLD
    (its code's get_state_kl_bound_sgld): D = mean over the batch of sum(((mean(x_hat) - mean(x)) / std)^2), twice the
    Gaussian KL(pi(.|x) || pi(.|x_hat)) (both share the state-independent std). D is flat at x_hat = x, so the start is
    x + step * sign(N(0, 1)); then `steps` steps delta += step * sign(dD/dx_hat + sqrt(2 step beta) / (k + 2) * N(0, 1)),
    each projected onto the ball (no re-clip to +-obs_clip); step = step_size * eps, beta = temperature.
    Returns x_hat (a constant: no autograd graph) and the batch-mean KL (D / 2) at the start and at x_hat."""
    step = step_size * eps
    with torch.no_grad():
        mean0 = agent.actor(x)
        inv_var = torch.exp(-2 * agent.actor.log_std)
        delta = step * torch.randn(x.shape, generator=generator).sign()
        noise = torch.randn((steps, *x.shape), generator=generator)
        vjp = make_actor_vjp(agent.actor)
        for k in range(steps):
            mean, backward = vjp(x + delta)
            if k == 0:
                kl_start = 0.5 * ((mean - mean0) ** 2 * inv_var).sum(1).mean()
            grad = backward((mean - mean0) * inv_var * (2 / x.shape[0]))  # dD/dx_hat: the noise is scaled against it
            ascent = grad.add_(noise[k], alpha=math.sqrt(2 * step * temperature) / (k + 2)).sign_()
            delta = delta.add_(ascent, alpha=step).clamp_(-eps, eps)
        kl_end = 0.5 * ((agent.actor(x + delta) - mean0) ** 2 * inv_var).sum(1).mean()
        return x + delta, kl_start, kl_end


def robust_policy_loss(agent, x_hat, actions, old_logprobs, advantages, clip_coef, ent_coef):
    """The robust loss (L_ar / L_bar of Algorithms 2-3, line 9): the clipped PPO policy loss at the adversarial states
    x_hat with the stored actions, old log-probs (taken at the clean states) and advantages, minus the entropy bonus
    (the std is state-independent: the entropy is the same at clean and perturbed states). x_hat is a constant. The
    actor alone runs at x_hat (get_action_and_value would also run the critic, whose output is not needed here)."""
    log_std = agent.actor.log_std
    newlogprob = -0.5 * (((actions - agent.actor(x_hat)) * torch.exp(-log_std)) ** 2).sum(1) - (log_std.sum() + 0.5 * math.log(2 * math.pi) * actions.shape[1])
    entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum()
    ratio = (newlogprob - old_logprobs).exp()
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    return torch.max(pg_loss1, pg_loss2).mean() - ent_coef * entropy


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


def save_checkpoint(path, agent, args, global_step, epsilon=None, resume_state=None):
    """One .safetensors file (docs/checkpoint.md), written to a temp file and renamed: a crash never leaves half a model.
    resume_state = (tensors, dict) from training_state(): stored under resume/ and the metadata key `resume`."""
    from safetensors.torch import save_file

    tensors = {k.replace(".", "/", 1): v.detach().contiguous().clone() for k, v in agent.state_dict().items()}
    meta = dict(
        format=1, script=os.path.basename(__file__), env_id=args.env_id, obs_dim=agent.actor.layers[0].in_features,
        act_dim=agent.actor.layers[-1].out_features, hidden_sizes=list(args.hidden_sizes), activation=args.activation,
        obs_clip=args.obs_clip, norm_eps=agent.obs_norm.eps, epsilon=epsilon, global_step=int(global_step),
        args={k: v for k, v in asdict(args).items() if k != "resume"}, git_commit=git_commit(),
    )
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
RUNTIME_FLAGS = ("save_model", "save_every", "eval_episodes", "progress", "track", "wandb_project_name", "wandb_entity")


def training_state(iteration, global_step, optimizer, rng, envs, next_obs_raw, ret_acc, ret_stats, ep_return, ep_length, recent_returns, wandb_id):
    """What --resume needs beyond the weights and the normalizer (docs/training.md): the next iteration, Adam's state, the
    RNG streams (numpy for the rollout noise, torch's for minibatch order and inner loops), every env mid-episode
    (MuJoCo's integration state with the solver's warm start, the derived quantities above, the time-limit counter and
    the reset RNG), the reward filter and the episode counters. Returns (tensors, a JSON-able dict)."""
    import mujoco

    opt = optimizer.state_dict()
    tensors = {f"adam/{i}/{k}": v for i, state in opt["state"].items() for k, v in state.items()}
    tensors.update(
        torch_rng=torch.get_rng_state(), next_obs=torch.from_numpy(next_obs_raw.copy()), ret_acc=torch.from_numpy(ret_acc.copy()),
        ret_stats=torch.tensor(ret_stats, dtype=torch.float64), ep_return=torch.from_numpy(ep_return.copy()), ep_length=torch.from_numpy(ep_length.copy()),
    )
    env_meta = []
    for i, env in enumerate(envs):
        u = env.unwrapped
        physics = np.empty(mujoco.mj_stateSize(u.model, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(u.model, u.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
        tensors[f"env/{i}/physics"] = torch.from_numpy(physics)
        tensors.update({f"env/{i}/{name}": torch.from_numpy(getattr(u.data, name).copy()) for name in MJ_DERIVED})
        env_meta.append(dict(elapsed_steps=time_limit(env)._elapsed_steps, np_random=u.np_random.bit_generator.state))
    meta = dict(iteration=iteration, global_step=int(global_step), np_rng=rng.bit_generator.state, envs=env_meta, adam_groups=opt["param_groups"],
                recent_returns=[float(r) for r in recent_returns[-10:]], wandb_id=wandb_id)
    return tensors, meta


def restore_training_state(resume, agent, optimizer, rng, envs):
    """The inverse of training_state() and of the weights' save; returns the loop's own variables."""
    import mujoco

    tensors, meta = resume["tensors"], resume["meta"]
    agent.load_state_dict(resume["weights"])
    n_params = len(meta["adam_groups"][0]["params"]) + len(meta["adam_groups"][1]["params"])
    adam = {i: {k: tensors[f"adam/{i}/{k}"] for k in ("step", "exp_avg", "exp_avg_sq")} for i in range(n_params) if f"adam/{i}/step" in tensors}
    optimizer.load_state_dict({"state": adam, "param_groups": meta["adam_groups"]})
    torch.set_rng_state(tensors["torch_rng"])
    rng.bit_generator.state = meta["np_rng"]
    for i, (env, env_meta) in enumerate(zip(envs, meta["envs"])):
        env.reset()  # gymnasium refuses to step an env that was never reset; the state is then overwritten
        u = env.unwrapped
        mujoco.mj_setState(u.model, u.data, tensors[f"env/{i}/physics"].numpy(), mujoco.mjtState.mjSTATE_INTEGRATION)
        for name in MJ_DERIVED:
            getattr(u.data, name)[...] = tensors[f"env/{i}/{name}"].numpy()
        time_limit(env)._elapsed_steps = env_meta["elapsed_steps"]
        u.np_random.bit_generator.state = env_meta["np_random"]
    ret_stats = tensors["ret_stats"].tolist()
    return (meta["iteration"], meta["global_step"], tensors["next_obs"].numpy().copy(), tensors["ret_acc"].numpy().copy(), *ret_stats,
            tensors["ep_return"].numpy().copy(), tensors["ep_length"].numpy().copy(), list(meta["recent_returns"]))


def time_limit(env):
    while not isinstance(env, gym.wrappers.TimeLimit):
        env = env.env
    return env


def load_resume(cli):
    """--resume PATH: the saved run's Args (RUNTIME_FLAGS from this command line; any other flag given must match the
    run's) and its state. Every problem is a one-line error."""
    from safetensors import safe_open

    path = cli.resume
    if not os.path.isfile(path):
        fail(f"--resume {path}: {'is a folder, not a checkpoint' if os.path.isdir(path) else 'no such file'}")
    try:
        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k[len("resume/"):]: f.get_tensor(k) for k in f.keys() if k.startswith("resume/")}
            weights = {k.replace("/", ".", 1): f.get_tensor(k) for k in f.keys() if not k.startswith("resume/")}
        meta = json.loads(header["robust_rl"])
    except Exception as e:
        fail(f"--resume {path}: not a readable robust-rl checkpoint ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})")
    if meta.get("script") != os.path.basename(__file__):
        fail(f"--resume {path}: written by {meta.get('script')}; resume it with that script")
    if "resume" not in header:
        fail(f"--resume {path}: holds no training state (a copied or pre-resume checkpoint, e.g. from zoo/); start a new run instead")
    state = json.loads(header["resume"])
    names = {f.name for f in dataclasses.fields(Args)} - {"resume", "batch_size", "minibatch_size", "num_iterations"}
    stored = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["args"].items() if k in names}
    default = Args()
    for name in sorted(names - set(RUNTIME_FLAGS)):
        given = getattr(cli, name)
        if given != getattr(default, name) and given != stored.get(name, getattr(default, name)):
            fail(f"--resume restores the run's flags: --{name.replace('_', '-')} {given} differs from the run's {stored.get(name)}")
    args = Args(**{**stored, **{k: getattr(cli, k) for k in RUNTIME_FLAGS}, "resume": path})
    return args, dict(tensors=tensors, meta=state, weights=weights)


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


if __name__ == "__main__":
    interrupt = Interrupt()
    quiet_warnings()
    args = tyro.cli(Args)
    resume = None
    if args.resume:
        args, resume = load_resume(args)
    args = resolve_args(args)
    if resume is None:
        # the folder is created exclusively: two runs started in the same second must not share (and overwrite) a checkpoint
        os.makedirs("runs", exist_ok=True)
        run_dir = tempfile.mkdtemp(prefix=f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}_", dir="runs")
        os.chmod(run_dir, 0o777 & ~UMASK)  # mkdtemp makes it private; a run folder is as readable as any output
        ckpt_path = f"{run_dir}/{args.exp_name}.safetensors"
    else:  # a resumed run continues in its folder and overwrites the checkpoint it resumed from
        run_dir, ckpt_path = os.path.dirname(args.resume) or ".", args.resume
    run_name = os.path.basename(os.path.abspath(run_dir))
    git_commit()  # record the code the run starts from, not the one at save time
    wandb_id = None
    if args.track:
        import wandb

        wandb.init(
            project=args.wandb_project_name,
            entity=args.wandb_entity,
            sync_tensorboard=True,
            config=vars(args),
            name=run_name,
            monitor_gym=False,
            save_code=True,
            id=resume["meta"]["wandb_id"] if resume else None,
            resume="allow",
        )
        wandb_id = wandb.run.id
    from torch.utils.tensorboard import SummaryWriter

    # resuming drops what the run logged after its checkpoint (those iterations run again)
    writer = SummaryWriter(run_dir, purge_step=resume["meta"]["global_step"] if resume else None)
    writer.add_text(
        "hyperparameters",
        "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(args).items()])),
    )

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.torch_threads)
    rng = np.random.default_rng(args.seed)

    # env setup: a plain list of envs stepped in a loop (gymnasium's vector-env machinery costs more than a
    # MuJoCo step at num_envs=1); we reset finished episodes ourselves and keep their final observations
    envs = [make_env(args.env_id, args.seed + i)() for i in range(args.num_envs)]
    obs_dim, act_dim = envs[0].observation_space.shape[0], envs[0].action_space.shape[0]
    act_low, act_high = envs[0].action_space.low, envs[0].action_space.high

    agent = Agent(obs_dim, act_dim, args)
    optimizer = torch.optim.Adam(
        [{"params": agent.actor.parameters(), "lr": args.learning_rate}, {"params": agent.critic.parameters(), "lr": args.value_learning_rate}],
        eps=1e-5,
        fused=True,  # one kernel per tensor: a third of the default Adam's cost at these sizes
    )
    base_lrs = [args.learning_rate, args.value_learning_rate]

    # ALGO Logic: Storage setup (normalized observations, as the actor saw them)
    obs = np.zeros((args.num_steps, args.num_envs, obs_dim), dtype=np.float32)
    actions = np.zeros((args.num_steps, args.num_envs, act_dim), dtype=np.float32)
    rewards = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
    ends = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)

    # TRY NOT TO MODIFY: start the game
    if resume is None:
        start_iteration, global_step = 1, 0
        next_obs_raw = np.stack([env.reset(seed=args.seed + i)[0] for i, env in enumerate(envs)])
        ret_acc = np.zeros(args.num_envs)  # discounted return, for reward scaling
        ret_mean, ret_var, ret_count = 0.0, 1.0, 1e-4
        ep_return, ep_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=np.int64)
        recent_returns = []
    else:  # exactly where the saved run stopped: weights, normalizer, Adam, RNG streams, envs mid-episode, filters
        start_iteration, global_step, next_obs_raw, ret_acc, ret_mean, ret_var, ret_count, ep_return, ep_length, recent_returns = restore_training_state(
            resume, agent, optimizer, rng, envs
        )
        if start_iteration > args.num_iterations:
            print(f"{ckpt_path}: the run already finished at step {global_step}; nothing to resume")
            sys.exit(0)
        print(f"resumed {ckpt_path} at step {global_step}", flush=True)
    start_time, start_step = time.time(), global_step

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
        std = np.exp(agent.actor.log_std.detach().numpy())
        noise = rng.standard_normal((args.num_steps, args.num_envs, act_dim)).astype(np.float32)
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
            for i, env in enumerate(envs):
                o, r, terminated, truncated, _ = env.step(clipped[i])
                ep_return[i] += r
                ep_length[i] += 1
                ret_acc[i] = ret_acc[i] * args.gamma + r
                rewards[step, i] = r
                ends[step, i] = terminated or truncated
                if terminated or truncated:
                    if truncated and not terminated:
                        final_obs.append(agent.obs_norm.normalize_np(o))
                        final_idx.append((step, i))
                    recent_returns.append(ep_return[i])
                    writer.add_scalar("charts/episodic_return", ep_return[i], global_step)
                    writer.add_scalar("charts/episodic_length", ep_length[i], global_step)
                    ep_return[i], ep_length[i] = 0.0, 0
                    o, _ = env.reset()
                next_obs_raw[i] = o
            # reward scaling: divide by the running std of the discounted return (SA-PPO's RewardFilter)
            b_n = args.num_envs
            b_mean = float(ret_acc.sum()) / b_n
            b_var = float(np.square(ret_acc - b_mean).sum()) / b_n
            delta, tot = b_mean - ret_mean, ret_count + b_n
            ret_var = (ret_var * ret_count + b_var * b_n + delta**2 * ret_count * b_n / tot) / tot
            ret_mean, ret_count = ret_mean + delta * b_n / tot, tot
            rewards[step] = np.clip(rewards[step] / np.sqrt(ret_var + 1e-8), -args.reward_clip, args.reward_clip)
            ret_acc[ends[step] > 0] = 0.0

        # values and log-probs for the whole rollout in one batched pass
        with torch.no_grad():
            t_obs = torch.from_numpy(obs.reshape(-1, obs_dim))
            t_actions = torch.from_numpy(actions.reshape(-1, act_dim))
            _, t_logprobs, _, t_values = agent.get_action_and_value(t_obs, t_actions)
            values = t_values.numpy().reshape(args.num_steps, args.num_envs)
            next_value = agent.get_value(torch.from_numpy(agent.obs_norm.normalize_np(next_obs_raw))).numpy().reshape(-1)
            if final_obs:
                final_values = agent.get_value(torch.from_numpy(np.stack(final_obs))).numpy().reshape(-1)
                for (s, i), v in zip(final_idx, final_values):
                    rewards[s, i] += args.gamma * v

        # bootstrap value if not done
        advantages = compute_gae(rewards, values, ends, next_value, args.gamma, args.gae_lambda)
        returns = advantages + values

        # flatten the batch
        b_obs = t_obs
        b_logprobs = t_logprobs
        b_actions = t_actions
        b_advantages = torch.from_numpy(advantages.reshape(-1))
        b_returns = torch.from_numpy(returns.reshape(-1))
        b_values = torch.from_numpy(values.reshape(-1))

        # Optimizing the policy and value network
        clipfracs = []
        for epoch in range(args.update_epochs):
            b_inds = torch.randperm(args.batch_size)
            # shuffle once per epoch, then take contiguous slices: one gather per tensor instead of one per minibatch
            e_obs, e_actions, e_logprobs, e_advantages, e_returns, e_values = (
                t[b_inds] for t in (b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values)
            )
            for start in range(0, args.batch_size, args.minibatch_size):
                mb_inds = slice(start, start + args.minibatch_size)

                _, newlogprob, entropy, newvalue = agent.get_action_and_value(e_obs[mb_inds], e_actions[mb_inds])
                logratio = newlogprob - e_logprobs[mb_inds]
                ratio = logratio.exp()

                with torch.no_grad():
                    # calculate approx_kl http://joschu.net/blog/kl-approx.html
                    old_approx_kl = (-logratio).mean()
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean())

                mb_advantages = e_advantages[mb_inds]
                if args.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

                # Policy loss
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                # Value loss
                newvalue = newvalue.view(-1)
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - e_returns[mb_inds]) ** 2
                    v_clipped = e_values[mb_inds] + torch.clamp(newvalue - e_values[mb_inds], -args.clip_coef, args.clip_coef)
                    v_loss_clipped = (v_clipped - e_returns[mb_inds]) ** 2
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                else:
                    v_loss = 0.5 * ((newvalue - e_returns[mb_inds]) ** 2).mean()

                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef

                # ALGO LOGIC: BAR-PPO inner problem (Algorithm 3, lines 7-8) with the current policy: SGLD maximizes
                # KL(pi(.|x) || pi(.|x_hat)) over the eps_t ball; outer problem (lines 9-10): the clipped surrogate at x_hat,
                # a constant in the gradient (no second-order terms)
                x_hat, kl_start, kl_end = sgld_kl_attack(agent, e_obs[mb_inds], eps_t, args.inner_steps, args.inner_step_size, args.sgld_temperature)
                robust_loss = robust_policy_loss(agent, x_hat, e_actions[mb_inds], e_logprobs[mb_inds], mb_advantages, args.clip_coef, args.ent_coef)
                if args.guidance:  # line 10: the vanilla PPO term has no entropy bonus; L_bar carries it (as CAR-RL's code)
                    loss = pg_loss + v_loss * args.vf_coef + args.kappa * robust_loss
                else:
                    loss = robust_loss + v_loss * args.vf_coef

                optimizer.zero_grad()
                loss.backward()
                if args.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(agent.actor.parameters(), args.max_grad_norm)
                    nn.utils.clip_grad_norm_(agent.critic.parameters(), args.max_grad_norm)
                optimizer.step()

            if args.target_kl is not None and approx_kl > args.target_kl:
                break

        y_pred, y_true = b_values.numpy(), b_returns.numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

        # TRY NOT TO MODIFY: record rewards for plotting purposes
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy_loss.item(), global_step)
        writer.add_scalar("losses/old_approx_kl", old_approx_kl.item(), global_step)
        writer.add_scalar("losses/approx_kl", approx_kl.item(), global_step)
        writer.add_scalar("losses/clipfrac", torch.stack(clipfracs).mean().item(), global_step)
        writer.add_scalar("losses/explained_variance", explained_var, global_step)
        writer.add_scalar("robust/eps", eps_t, global_step)
        writer.add_scalar("robust/kappa", args.kappa, global_step)
        writer.add_scalar("robust/kl_start", kl_start.item(), global_step)
        writer.add_scalar("robust/kl_end", kl_end.item(), global_step)
        writer.add_scalar("robust/kl", kl_end.item(), global_step)
        writer.add_scalar("robust/loss", robust_loss.item(), global_step)
        writer.add_scalar("charts/SPS", sps, global_step)
        recent = float(np.mean(recent_returns[-10:])) if recent_returns else float("nan")
        pbar.update(args.batch_size)
        pbar.set_postfix(ret=f"{recent:.0f}", sps=sps, refresh=False)
        if not show_bar and (iteration == 1 or iteration % max(1, args.num_iterations // 20) == 0 or iteration == args.num_iterations):
            eta = (args.num_iterations - iteration) * args.batch_size / max(sps, 1)
            print(f"iter {iteration}/{args.num_iterations} step {global_step} return(last10) {recent:.1f} SPS {sps} ETA {eta/60:.1f} min", flush=True)
        if args.save_model and ((args.save_every and iteration % args.save_every == 0) or interrupt.signum or iteration == args.num_iterations):
            state = training_state(iteration + 1, global_step, optimizer, rng, envs, next_obs_raw, ret_acc, (ret_mean, ret_var, ret_count), ep_return, ep_length, recent_returns, wandb_id)
            save_checkpoint(ckpt_path, agent, args, global_step, epsilon=args.epsilon, resume_state=state)
            interrupt.saved = ckpt_path
        if interrupt.signum:
            pbar.close()
            writer.close()
            saved = f"saved {ckpt_path}; resume with --resume {ckpt_path}" if args.save_model else "nothing saved (--no-save-model)"
            print(f"interrupted at step {global_step}; {saved}", file=sys.stderr, flush=True)
            sys.exit(128 + interrupt.signum)
    interrupt.in_loop = False
    pbar.close()

    if args.save_model:
        print(f"model saved to {ckpt_path}")
    if args.eval_episodes > 0:
        from eval_attacks import evaluate

        episodic_returns = evaluate(agent, args.env_id, episodes=args.eval_episodes, seed=args.seed + 10_000)
        for idx, episodic_return in enumerate(episodic_returns):
            writer.add_scalar("eval/episodic_return", episodic_return, idx)
        writer.add_scalar("eval/natural_return", float(np.mean(episodic_returns)), global_step)
        print(f"eval: natural return {np.mean(episodic_returns):.1f} +- {np.std(episodic_returns):.1f} over {args.eval_episodes} episodes")
    if args.eval_episodes > 0 and args.epsilon is not None:
        # the attacks that need no training, at the env's budget (all six: eval_attacks.py --attacks all)
        from attacks.critic import CriticAttack
        from attacks.mad import MADAttack
        from attacks.random import RandomAttack

        for attack in (RandomAttack(agent, args.epsilon), CriticAttack(agent, args.epsilon), MADAttack(agent, args.epsilon)):
            attacked = evaluate(agent, args.env_id, episodes=args.eval_episodes, seed=args.seed + 10_000, attack=attack)
            writer.add_scalar(f"eval/{attack.name}_return", float(np.mean(attacked)), global_step)
            print(f"eval: {attack.name} return {np.mean(attacked):.1f} +- {np.std(attacked):.1f} (eps {args.epsilon})")

    for env in envs:
        env.close()
    writer.close()
