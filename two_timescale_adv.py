# docs: README.md#two_timescale_advpy
"""Adversarial training against an adversarial policy with partial control, with a min oracle or two timescales.

Paper: Liu et al., "Rethinking Adversarial Policies: A Generalized Attack Formulation and Provable Defense in RL",
ICLR 2024 (arXiv 2305.17342), Sec. 3 (the attack), Sec. 4 (Algorithm 1: min oracle; Algorithm 2: two timescales),
Sec. 6 and App. E (Kuhn poker, Fig. 2). The victim nu plays against alpha, whose deployed policy is
    (1 - eps_pi) * benign + eps_pi * adversarial        (a per-step Bernoulli(eps_pi) coin: whose action is executed)
and maximizes its worst case over the adversarial part. Defenses (--defense), one victim step per iteration:
    none           the victim learns against the benign opponent alone (no attacker)
    single         attacker and victim take simultaneous gradient steps at the same learning rate
    two_timescale  Algorithm 2: the attacker steps at --timescale-ratio times the victim's learning rate
    min_oracle     Algorithm 1: the attacker is the best response to the current victim: exact in Kuhn (a game-tree
                   search); in MuJoCo approximated by --oracle-iters PPO iterations of the attacker alone (victim frozen)
    self_play      sumo baseline (Bansal et al. 2018): the opponent is the victim itself, as it is this iteration
    fictitious_play  sumo baseline (Heinrich & Silver 2016): the opponent is a uniformly drawn past iterate of the victim
Kuhn: victim lr = --attacker-lr / --timescale-ratio for every defense (single: the attacker at that lr too); MuJoCo:
the victim keeps the per-env PPO learning rates and the attacker's are --timescale-ratio times those (single: equal),
or, with --attacker-lr, the victim's are --attacker-lr / --timescale-ratio. Under PPO the ratio of learning rates is
an upper bound on the separation: the clip bounds how far either policy moves per iteration, so the attacker's step
grows less than tenfold at ratio 10; adversary/approx_kl and adversary/clipfrac (beside the victim's losses/...) show
the separation a run actually had.

Setting (--env-id):
    kuhn   Kuhn poker, exact (envs/kuhn.py): tabular policies P(bet or call) per information state, the victim
           --victim-player (2) against alpha = the other player with a uniform benign policy. Gradients exact or
           from sampled episodes (--gradient), steps projected onto [0, 1] (Algorithms 1-2, --parametrization direct)
           or on logits (softmax). Every --log-every iterations, exactly: the victim's worst case and
           gap = robust optimum - worst case (0 = most robust) for the last and the average iterate.
    MuJoCo any continuous-control -v4/-v5 env: the single-agent special case (PR-MDP, Tessler et al. 2019, arXiv
           1901.09184): alpha shares the victim's actuators, the benign policy is the victim's own, and with
           probability eps_pi (a per-step, per-env coin) the attacker's action is executed. Victim and attacker are
           both PPO (this file is ppo_continuous.py plus the attacker); the attacker's policy loss counts only the
           steps it acted, the victim's only the steps it acted, both critics all steps; the attacker is paid minus
           the victim's (scaled) reward; each normalizes its advantages over the steps it acted. Checkpoint: the
           victim under actor/, critic/, obs_norm/ (any tool reads it), the attacker under adversary/. --oracle-iters
           K: K attacker iterations per victim iteration, the extra ones on rollouts where the victim is frozen
           (min_oracle: K of them, then the victim learns alone).
    sumo-puck, sumo-ant  the two-agent arena of envs/sumo.py (the paper's Robosumo, Sec. 7, App. E). Phase 1 trains
           the benign policy by self-play (one PPO policy plays both agents and learns from both; written to
           benign.safetensors). Phase 2: the victim (agent 0) starts from it and trains against agent 1 =
           alpha = (1 - eps_pi) benign + eps_pi attacker (a per-step, per-env coin: whose action agent 1 executes),
           or with self_play / fictitious_play against its own iterates. The victim learns from all its steps, the
           attacker's policy loss counts the steps it acted, its critic all, and it is paid minus the victim's game
           result plus agent 1's own shaping (as self-play pays agent 1); the benign policy stays frozen. The dense
           shaping falls from 1 to 0 over the first --shaping-anneal of each phase. Checkpoint: the victim under actor/, critic/, obs_norm/, the benign policy
           under benign/, the attacker under adversary/; eval_attacks.py --attacks action_mix reads it (win / loss /
           draw rates, W2 stealthiness). Interrupts save atomically; --resume continues either phase bit for bit
           (phase 1 from benign.safetensors, phase 2 from the victim's checkpoint).

Reproduce Fig. 2 (gap vs iteration, min_oracle / two_timescale 10 and 100 / single, eps_pi 0.5 and 1.0, 5 seeds):
    python benchmark/kuhn_fig2.py
One run, and a PR-MDP victim trained against a 10x faster attacker that controls 30% of the steps:
    python two_timescale_adv.py --env-id kuhn --defense two_timescale --eps-pi 1.0 --num-seeds 5
    python two_timescale_adv.py --env-id Hopper-v4 --defense two_timescale --eps-pi 0.3
    python eval_attacks.py --model runs/Hopper-v4__two_timescale_adv__1__*/two_timescale_adv.safetensors --attacks action_mix --eps-pi 0.3
Puck sumo: a self-play benign policy, a victim trained against a 10x faster attacker with 30% of agent 1's steps,
then a fresh attacker against the frozen victim (win / loss / draw rates, W2 stealthiness; docs/sumo.md):
    python two_timescale_adv.py --env-id sumo-puck --defense two_timescale --eps-pi 0.3
    python eval_attacks.py --model runs/sumo-puck__two_timescale_adv__1__*/two_timescale_adv.safetensors --attacks action_mix --eps-pi 0.3
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

from envs import quiet_warnings  # envs.kuhn (scipy) is imported by the Kuhn path alone: the MuJoCo path starts faster

# Per-environment defaults. Learning rates, initial std and value clipping are the SA-PPO vanilla-PPO
# configs (config_{hopper,walker,halfcheetah}_vanilla_ppo.json); eps (the attack budget, l_inf in
# normalized-observation units) and budgets are the BARPO paper's (Sec. 5, App. F.3).
ENV_DEFAULTS = {
    "Hopper": dict(epsilon=0.075, total_timesteps=2_000_000, learning_rate=3e-4, value_learning_rate=2.5e-4, init_std=1.0, clip_vloss=False, anneal_lr=True, ent_coef=0.0),
    "Walker2d": dict(epsilon=0.05, total_timesteps=2_000_000, learning_rate=4e-4, value_learning_rate=3e-4, init_std=1.0, clip_vloss=True, anneal_lr=True, ent_coef=0.0),
    "HalfCheetah": dict(epsilon=0.15, total_timesteps=2_000_000, learning_rate=3e-4, value_learning_rate=1e-4, init_std=0.5, clip_vloss=True, anneal_lr=True, ent_coef=0.0),
    "Ant": dict(epsilon=0.15, total_timesteps=10_000_000, learning_rate=3e-4, value_learning_rate=3e-4, init_std=1.0, clip_vloss=True, anneal_lr=True, ent_coef=0.0),
    "Humanoid": dict(epsilon=0.075, total_timesteps=10_000_000, learning_rate=3e-4, value_learning_rate=3e-4, init_std=1.0, clip_vloss=True, anneal_lr=True, ent_coef=0.0),
}
GENERIC_DEFAULTS = dict(epsilon=None, total_timesteps=1_000_000, learning_rate=3e-4, value_learning_rate=3e-4, init_std=1.0, clip_vloss=True, anneal_lr=True, ent_coef=0.0)
# The sumo arena (envs/sumo.py): PPO's generic settings (the paper's Robosumo PPO, App. E.3, names only clip 0.2, GAE
# 0.95, 64 hidden units and Adam). Budgets per phase (1: self-play benign policy, 2: the victim's adversarial training):
# the paper trains 3e7 steps on RoboSumo's ants; the puck is a far simpler game.
SUMO_DEFAULTS = {
    "puck": dict(benign_timesteps=2_000_000, total_timesteps=2_000_000, learning_rate=3e-4, value_learning_rate=3e-4, init_std=1.0, clip_vloss=True, anneal_lr=True, ent_coef=0.0),
    "ant": dict(benign_timesteps=10_000_000, total_timesteps=10_000_000, learning_rate=3e-4, value_learning_rate=3e-4, init_std=1.0, clip_vloss=True, anneal_lr=True, ent_coef=0.0),
}


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
    env_id: str = "kuhn"
    """the setting: kuhn (the exact game), a gymnasium MuJoCo -v4/-v5 env id (the PR-MDP) or sumo-puck / sumo-ant (the arena)"""
    total_timesteps: Optional[int] = None
    """total timesteps of the experiments (default per env: 2M Hopper/Walker2d/HalfCheetah, 10M Ant/Humanoid, 1M otherwise; sumo: phase 2's)"""
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
    defense: Literal["none", "single", "two_timescale", "min_oracle", "self_play", "fictitious_play"] = "two_timescale"
    """adversarial training: none, single timescale, two timescales (Algorithm 2), a min oracle (Algorithm 1; MuJoCo: approximated by PPO), or the sumo baselines self_play / fictitious_play"""
    eps_pi: float = 0.3
    """the attacker's share of control: alpha plays (1 - eps_pi) * benign + eps_pi * adversarial"""
    attacker_lr: Optional[float] = None
    """the attacker's learning rate; the victim's is attacker_lr / timescale_ratio (single: equal). Default: Kuhn 0.1;
    MuJoCo and sumo: the victim keeps its per-env --learning-rate and the attacker's follows"""
    timescale_ratio: float = 10.0
    """attacker lr / victim lr (Algorithm 2 needs it >> 1; single: the attacker at the victim's lr)"""
    fused_update: bool = True
    """MuJoCo: victim and attacker as one stacked network (one forward per rollout step, one forward and backward per minibatch); --no-fused-update: two networks, the reference path (same results)"""
    oracle_iters: int = 1
    """attacker updates per victim update: Kuhn gradient steps (min_oracle's attacker is exact), MuJoCo PPO iterations on rollouts of their own"""
    iterations: int = 2000
    """Kuhn: victim updates"""
    victim_player: int = 2
    """Kuhn: the victim's seat (1 or 2); alpha is the other player"""
    benign_policy: Optional[str] = None
    """Kuhn: alpha's benign policy as a JSON file ({"policy": {infostate: P(b)}}); default uniform (1/2 everywhere)"""
    gradient: Literal["exact", "sampled"] = "exact"
    """Kuhn: exact gradients on the game tree, or REINFORCE from --episodes-per-update sampled episodes with the coin"""
    episodes_per_update: int = 16
    """Kuhn, --gradient sampled: episodes per update (the paper's batch size, App. E.3)"""
    parametrization: Literal["direct", "softmax"] = "direct"
    """Kuhn: policies as P(b) per infostate, steps projected onto [0, 1] (Algorithms 1-2), or as logits (softmax)"""
    log_every: int = 10
    """Kuhn: measure (exact worst case and gap of the last and the average iterate) every this many iterations"""
    save_policy: Optional[str] = None
    """Kuhn: also write the victim's last-iterate policy to this JSON file ({"policy": {infostate: P(b)}}; one seed)"""
    benign_timesteps: Optional[int] = None
    """sumo: env steps of phase 1, the self-play benign policy (default per body: puck 2M, ant 10M)"""
    benign: tuple[str, ...] = ()
    """sumo: skip phase 1 and take the benign policy from these checkpoints (a sumo run's benign.safetensors; one, or one per seed)"""
    shaping_anneal: float = 0.5
    """sumo: the shaping coefficient falls linearly from 1 to 0 over this share of each phase (0: no shaping)"""
    pool_size: int = 100
    """sumo, fictitious_play: past iterates kept (a uniform reservoir sample of all of them; the opponent is drawn from it per episode)"""

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


def resolve_lrs(args, lr_given, value_lr_given, separated):
    """The learning rates of victim and attacker: with --attacker-lr, the victim's follow it (attacker_lr /
    timescale_ratio when the timescales are separated, equal for single; the critic's in proportion unless given);
    without it, the attacker's follow the victim's per-env rates."""
    ratio = args.timescale_ratio if separated else 1.0
    if args.attacker_lr is None:
        args.attacker_lr = args.learning_rate * ratio
        return
    victim_lr = args.attacker_lr / ratio
    if lr_given and not math.isclose(args.learning_rate, victim_lr, rel_tol=1e-9):
        fail(f"--attacker-lr {args.attacker_lr:g} makes the victim's learning rate {victim_lr:g} (--defense {args.defense}, --timescale-ratio "
             f"{args.timescale_ratio:g}), but --learning-rate is {args.learning_rate:g}: give one of the two")
    if not value_lr_given:
        args.value_learning_rate *= victim_lr / args.learning_rate
    args.learning_rate = victim_lr


def resolve_args(args):
    if args.env_id == "kuhn":
        return resolve_kuhn_args(args)
    if args.env_id.startswith("sumo"):
        return resolve_sumo_args(args)
    try:
        gym.spec(args.env_id)
    except Exception:
        fail(f"unknown env id {args.env_id!r} (gymnasium has no such environment)")
    lr_given, value_lr_given = args.learning_rate is not None, args.value_learning_rate is not None
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
    if args.epsilon is not None and not 0 <= args.epsilon < math.inf:
        fail(f"--epsilon must be finite and >= 0, got {args.epsilon}")
    if args.save_every < 0 or args.eval_episodes < 0 or args.max_grad_norm < 0 or not 0 <= args.ent_coef < math.inf:
        fail("--save-every, --eval-episodes, --max-grad-norm and --ent-coef must be >= 0")
    if args.target_kl is not None and args.num_seeds > 1:
        fail("--target-kl stops one seed's epochs early, which --num-seeds > 1 cannot do per seed: train those seeds apart")
    if not args.hidden_sizes or min(args.hidden_sizes) <= 0:
        fail(f"--hidden-sizes must be positive integers, got {args.hidden_sizes}")
    args.batch_size = int(args.num_envs * args.num_steps)
    if args.batch_size % args.num_minibatches:
        fail(f"--num-minibatches {args.num_minibatches} does not divide the batch size {args.batch_size}")
    args.minibatch_size = int(args.batch_size // args.num_minibatches)
    args.num_iterations = max(1, args.total_timesteps // args.batch_size)
    # the attacker (PR-MDP): the victim keeps the per-env PPO learning rates; the attacker's follow the timescale ratio
    if not 0 <= args.eps_pi <= 1:
        fail(f"--eps-pi must be in [0, 1], got {args.eps_pi}")
    if args.oracle_iters < 1 or (args.oracle_iters > 1 and args.defense == "none"):
        fail(f"--oracle-iters must be >= 1, and > 1 needs an attacker (--defense single, two_timescale or min_oracle), got {args.oracle_iters}")
    if args.defense in ("self_play", "fictitious_play") or args.benign:
        fail(f"--defense {args.defense} and --benign are for the sumo arena (two agents); the MuJoCo setting has one")
    if not args.timescale_ratio > 0 or (args.attacker_lr is not None and not args.attacker_lr > 0):
        fail("--timescale-ratio and --attacker-lr must be positive")
    resolve_lrs(args, lr_given, value_lr_given, separated=args.defense in ("two_timescale", "min_oracle"))
    return args


SUMO_ENV_IDS = ("sumo-puck", "sumo-ant")


def resolve_sumo_args(args):
    """The sumo arena's flags: per-body defaults, then the MuJoCo path's checks, then its own; every problem one line."""
    if args.env_id not in SUMO_ENV_IDS:
        fail(f"unknown sumo arena {args.env_id!r} (choose from {', '.join(SUMO_ENV_IDS)})")
    lr_given, value_lr_given = args.learning_rate is not None, args.value_learning_rate is not None
    for k, v in SUMO_DEFAULTS[args.env_id.split("-", 1)[1]].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    for name in ("total_timesteps", "benign_timesteps", "num_seeds", "num_envs", "num_steps", "num_minibatches", "update_epochs", "torch_threads", "pool_size"):
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
    if args.epsilon is not None:
        fail("--epsilon is an observation-attack budget; the sumo arena's budget is --eps-pi")
    if not 0 <= args.shaping_anneal <= 1:
        fail(f"--shaping-anneal must be in [0, 1], got {args.shaping_anneal}")
    # phase 2's batch is the victim's steps; phase 1 learns from both agents' steps, twice as many
    args.batch_size = int(args.num_envs * args.num_steps)
    if args.batch_size % args.num_minibatches:
        fail(f"--num-minibatches {args.num_minibatches} does not divide the batch size {args.batch_size}")
    args.minibatch_size = int(args.batch_size // args.num_minibatches)
    args.num_iterations = max(1, args.total_timesteps // args.batch_size)
    if not 0 <= args.eps_pi <= 1:
        fail(f"--eps-pi must be in [0, 1], got {args.eps_pi}")
    if args.defense == "min_oracle" or args.oracle_iters != 1:
        fail("min_oracle and --oracle-iters are not run on the sumo arena, as the paper's Robosumo experiments (Sec. 7: a best-response oracle by game-tree search is unattainable there; use two_timescale, single, self_play or fictitious_play)")
    if args.exp_name == "benign":
        fail("--exp-name benign: phase 2 would write its victim over the run's benign.safetensors; choose another name")
    if not args.timescale_ratio > 0 or (args.attacker_lr is not None and not args.attacker_lr > 0):
        fail("--timescale-ratio and --attacker-lr must be positive")
    resolve_lrs(args, lr_given, value_lr_given, separated=args.defense == "two_timescale")
    if args.benign and len(args.benign) not in (1, args.num_seeds):
        fail(f"--benign takes one checkpoint or one per seed ({args.num_seeds}), got {len(args.benign)}")
    for path in args.benign:  # the file must be a sumo policy of this body and these network sizes
        from attacks.checkpoint import CheckpointError, read_checkpoint

        try:
            tensors, meta = read_checkpoint(path)
        except CheckpointError as e:
            fail(f"--benign {e}")
        if meta["env_id"] != args.env_id:
            fail(f"--benign {path}: a policy for {meta['env_id']}, not {args.env_id}")
        if list(meta.get("hidden_sizes", [])) != list(args.hidden_sizes) or meta["activation"] != args.activation:
            fail(f"--benign {path}: networks {meta.get('hidden_sizes')} {meta['activation']}, this run's {list(args.hidden_sizes)} {args.activation}")
        if "critic/layers.0.weight" not in tensors:
            fail(f"--benign {path}: has no critic (the victim starts from the benign actor and critic)")
        if any(k.startswith("benign/") for k in tensors):
            fail(f"--benign {path}: a phase-2 victim (it holds benign/); pass its run's benign.safetensors")
        if meta.get("complete") is False:
            fail(f"--benign {path}: its phase 1 did not finish (saved at step {meta.get('global_step')}); train it again")
    return args


def resolve_kuhn_args(args):
    from envs import kuhn

    if args.attacker_lr is None:
        args.attacker_lr = 0.1
    if not 0 <= args.eps_pi <= 1:
        fail(f"--eps-pi must be in [0, 1], got {args.eps_pi}")
    if args.defense in ("self_play", "fictitious_play") or args.benign:
        fail(f"--defense {args.defense} and --benign are for the sumo arena; in Kuhn the opponent is alpha's benign policy (--benign-policy)")
    if not args.attacker_lr > 0 or not args.timescale_ratio > 0 or not math.isfinite(args.attacker_lr * args.timescale_ratio):
        fail("--attacker-lr and --timescale-ratio must be positive and finite")
    if args.resume:
        fail("--resume is for the MuJoCo setting (a Kuhn run takes seconds)")
    for name in ("num_seeds", "oracle_iters", "iterations", "episodes_per_update", "log_every"):
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.victim_player not in (1, 2):
        fail(f"--victim-player must be 1 or 2, got {args.victim_player}")
    if args.save_policy and args.num_seeds > 1:
        fail("--save-policy writes one policy: use it with --num-seeds 1 (every seed's policy is in its run folder)")
    if args.benign_policy:
        try:
            player, _ = kuhn.load_policy(args.benign_policy)
        except (OSError, ValueError) as e:
            fail(f"--benign-policy {args.benign_policy}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
        if player != 3 - args.victim_player:
            fail(f"--benign-policy {args.benign_policy} is player {player}'s; alpha is player {3 - args.victim_player}")
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


def linear(x, weight, bias):
    """A Linear layer's arithmetic for a stacked weight [N, out, in] and bias [N, out]."""
    if weight.shape[1] == 1:
        # bmm takes a gemv path at N = 1 that rounds differently from N > 1; multiply-and-sum is the same for any N
        return (x * weight).sum(-1, keepdim=True) + bias.unsqueeze(1)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


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
        return linear(x, weight, bias)


def numpy_mlp(layers, activation):
    """A numpy copy of a stacked MLP's forward, from its layers' (weight [N, out, in], bias [N, out]) arrays."""
    weights = [(w.transpose(0, 2, 1).copy(), b[:, None].copy()) for w, b in layers]
    act = np.tanh if activation is torch.tanh else (lambda h: np.maximum(h, 0.0))

    def mean(x):
        for w, b in weights[:-1]:
            x = act(x @ w + b)
        return x @ weights[-1][0] + weights[-1][1]

    return mean


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
        # the attacker of the PR-MDP (saved under adversary/, which tools that read the victim ignore)
        self.adversary = Adversary(obs_dim, act_dim, args, generators) if args.defense in ("single", "two_timescale", "min_oracle") else None

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
        return numpy_mlp([(layer.weight.detach().numpy(), layer.bias.detach().numpy()) for layer in self.actor.layers], self.actor.act)

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


class Adversary(nn.Module):
    """The attacker: a Gaussian PPO actor-critic like the victim's, on the victim's normalized observation, acting in
    the victim's action space (the PR-MDP's adversary shares the actuators)."""

    def __init__(self, obs_dim, act_dim, args, generators):
        super().__init__()
        self.critic = MLP((obs_dim, *args.hidden_sizes, 1), args.activation, 1.0, generators)
        self.actor = Actor((obs_dim, *args.hidden_sizes, act_dim), args.activation, args.init_std, generators)

    get_value = Agent.get_value
    get_action_and_value = Agent.get_action_and_value
    numpy_actor = Agent.numpy_actor


class StackedMLP:
    """MLPs of the same sizes (each itself stacked over seeds) run as one: layer i's weight and bias are the
    concatenation of theirs along the seed dim, taken anew at every call, so rows [k N, (k + 1) N) of the input go
    through mlps[k]. Each MLP keeps its own parameters (and Adam state and learning rate): the gradient flows back
    through cat to each. Why: at 64-64 a layer costs per call, not per FLOP, so one baddbmm for two networks costs
    about what one does; bmm and the per-row reductions are batch-invariant, so each row computes the same bits as
    its own network alone. A plain class holding the parameter tensors: nn.Module's attribute lookup costs here."""

    def __init__(self, mlps):
        self.layers = [([m.layers[i].weight for m in mlps], [m.layers[i].bias for m in mlps]) for i in range(len(mlps[0].layers))]
        self.log_stds = [m.log_std for m in mlps] if hasattr(mlps[0], "log_std") else None
        self.act = mlps[0].act

    def stacked(self):
        """Per layer (weight [K N, out, in], bias [K N, out]), with the autograd graph back to each MLP."""
        return [(torch.cat(weights), torch.cat(biases)) for weights, biases in self.layers]

    def __call__(self, x):
        layers = self.stacked()
        for weight, bias in layers[:-1]:
            x = self.act(linear(x, weight, bias))
        return linear(x, *layers[-1])

    @property
    def log_std(self):
        return torch.cat(self.log_stds)


class Joint:
    """The victim and the attacker as one agent of 2N seeds: rows [0, N) are the victim's, [N, 2N) the attacker's,
    both on the victim's normalized observation (x repeated: [2N, B, obs_dim]). The fused path's rollout and update
    run through it (see StackedMLP); the parameters stay the victim's and the attacker's own."""

    def __init__(self, agent, adversary):
        self.actor, self.critic = StackedMLP([agent.actor, adversary.actor]), StackedMLP([agent.critic, adversary.critic])

    get_action_and_value = Agent.get_action_and_value

    def numpy_actor(self):
        """The rollout's numpy mean head of both actors: x [2N, B, obs_dim] -> [2N, B, act_dim]."""
        return numpy_mlp([(w.detach().numpy(), b.detach().numpy()) for w, b in self.actor.stacked()], self.actor.act)


def masked_mean(x, mask):
    """Per seed, the mean of x [N, B] over the entries where mask [N, B] is 1 (0 when there are none)."""
    return (x * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def masked_normalize(x, mask):
    """Per seed, x [N, B] shifted and scaled to mean 0, std 1 over the entries where mask is 1. Why not over all
    steps: each learner's critic baselines the mixture's play, so its advantages on the steps it acted lean positive;
    normalized over all steps they would push up every sampled action's probability."""
    n = mask.sum(1, keepdim=True)
    mean = (x * mask).sum(1, keepdim=True) / n.clamp(min=1.0)
    var = (((x - mean) * mask) ** 2).sum(1, keepdim=True) / (n - 1).clamp(min=1.0)
    return (x - mean) / (var.sqrt() + 1e-8)


def adversary_loss(adversary, obs, actions, logprobs, advantages, returns, values, acted, args):
    """The attacker's PPO loss per seed [N]: the clipped surrogate on the steps it acted (its advantages come from its
    own reward, minus the victim's, and its own critic, normalized over those steps), the value loss on every step.
    Also returns its approx_kl and clip fraction [N] (over every step, as the victim's)."""
    _, newlogprob, entropy, newvalue = adversary.get_action_and_value(obs, actions)
    logratio = newlogprob - logprobs
    ratio = logratio.exp()
    with torch.no_grad():
        stats = (((ratio - 1) - logratio).mean(1), ((ratio - 1.0).abs() > args.clip_coef).float().mean(1))
    if args.norm_adv:
        advantages = masked_normalize(advantages, acted)
    pg_loss = masked_mean(torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)), acted)
    newvalue = newvalue.squeeze(2)
    if args.clip_vloss:
        v_clipped = values + torch.clamp(newvalue - values, -args.clip_coef, args.clip_coef)
        v_loss = 0.5 * torch.max((newvalue - returns) ** 2, (v_clipped - returns) ** 2).mean(1)
    else:
        v_loss = 0.5 * ((newvalue - returns) ** 2).mean(1)
    return pg_loss - args.ent_coef * entropy.mean(1) + v_loss * args.vf_coef, stats


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


def save_checkpoint(path, agent, n, args, global_step, epsilon=None, resume_state=None, complete=None):
    """Seed n's agent as one .safetensors file (docs/checkpoint.md), written to a temp file and renamed: a crash never
    leaves half a model. args: seed n's (its own --seed). resume_state = (tensors, dict) from training_state(): stored
    under resume/ and the metadata key `resume`. complete (sumo): whether the phase had finished, metadata key `complete`."""
    from safetensors.torch import save_file

    tensors = {k.replace(".", "/", 1): v.detach().contiguous().clone() for k, v in agent.seed_state_dict(n).items()}
    meta = dict(
        format=1, script=os.path.basename(__file__), env_id=args.env_id, obs_dim=agent.actor.layers[0].in_features,
        act_dim=agent.actor.layers[-1].out_features, hidden_sizes=list(args.hidden_sizes), activation=args.activation,
        obs_clip=args.obs_clip, norm_eps=agent.obs_norm.eps, epsilon=epsilon, global_step=int(global_step),
        args={k: v for k, v in asdict(args).items() if k != "resume"}, git_commit=git_commit(),
    )
    if complete is not None:
        meta["complete"] = bool(complete)
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
        if (s["iteration"], s.get("phase")) != (state["iteration"], state.get("phase")) or m["args"]["num_seeds"] != len(paths):
            fail(f"--resume {cli.resume}: {path} is at another iteration or from another run")
        seeds.append(dict(path=path, meta=s, tensors=tensors, weights=weights, args=s.get("args", m["args"])))  # sumo: the run's own
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
    return args.wandb_group or f"{args.env_id}__{args.exp_name}__{args.defense}__eps_pi{args.eps_pi}", [args.exp_name, args.env_id, f"defense={args.defense}", f"eps_pi={args.eps_pi}"]


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


def reach_weights(player, probs):
    """The probability that the player's own actions lead to each of its information states: player 2 acts once,
    player 1 reaches "<card>pb" only by passing at "<card>". Averaging policies with these weights averages their
    realization plans: the average iterate plays like the uniform mixture of the iterates (Algorithms 1-2's output)."""
    return np.ones(6) if player == 2 else np.concatenate([np.ones(3), 1.0 - probs[:3]])


def sampled_grads(victim, victim_probs, adversary_probs, benign, eps_pi, batch_size, rng):
    """REINFORCE estimates of d V_victim / d P(b) for the victim and the adversary from sampled episodes: a random deal,
    the victim samples its actions, alpha's action comes from the adversary with probability eps_pi (a fresh coin at
    each of its decisions) and from the benign policy otherwise; the adversary's score counts only the decisions it
    took. The score of P(b) for action a is (a - p) / (p (1 - p)), clipped away from 0 and 1; baseline: the batch mean."""
    from envs import kuhn

    returns, traces = [], []
    for _ in range(batch_size):
        cards = kuhn.DEALS[rng.integers(len(kuhn.DEALS))]
        history, steps = "", []
        while history not in kuhn.TERMINAL_HISTORIES:
            player = 1 if len(history) % 2 == 0 else 2
            i = kuhn.INFOSTATES[player].index(f"{cards[player - 1]}{history}")
            if player == victim:
                who, p = "victim", victim_probs[i]
            elif rng.random() < eps_pi:
                who, p = "adversary", adversary_probs[i]
            else:
                who, p = "benign", benign[i]
            action = int(rng.random() < p)
            steps.append((who, i, action, p))
            history += "pb"[action]
        payoff = kuhn.payoff(cards, history)
        returns.append(payoff if victim == 1 else -payoff)
        traces.append(steps)
    baseline = float(np.mean(returns))
    grads = {"victim": np.zeros(6), "adversary": np.zeros(6)}
    for ret, steps in zip(returns, traces):
        for who, i, action, p in steps:
            if who in grads:
                p = min(max(p, 1e-3), 1 - 1e-3)
                grads[who][i] += (ret - baseline) * (action - p) / (p * (1 - p))
    return grads["victim"] / batch_size, grads["adversary"] / batch_size


def train_kuhn(args):
    """The Kuhn setting: tabular victim and attacker, exact measures; per seed a run folder with metrics.json (the
    curves benchmark/kuhn_fig2.py plots), TensorBoard scalars kuhn/* and the victim's last and average policies."""
    from envs import kuhn

    victim = args.victim_player
    benign = kuhn.load_policy(args.benign_policy)[1] if args.benign_policy else kuhn.uniform_policy()
    victim_lr = args.attacker_lr / args.timescale_ratio
    attacker_lr = {"two_timescale": args.attacker_lr, "single": victim_lr}.get(args.defense, 0.0)
    # the most robust victim's worst case: a linear program on the sequence form, once per run
    optimum, _ = kuhn.robust_optimum(victim, benign, args.eps_pi)
    os.makedirs("runs", exist_ok=True)

    for seed in range(args.seed, args.seed + args.num_seeds):
        run_dir = tempfile.mkdtemp(prefix=f"{args.env_id}__{args.exp_name}__{seed}__{int(time.time())}_", dir="runs")
        os.chmod(run_dir, 0o777 & ~UMASK)  # mkdtemp makes it private; a run folder is as readable as any output
        run_args = dict(asdict(args), seed=seed, victim_lr=victim_lr, effective_attacker_lr=attacker_lr)
        wandb_run = None
        if args.track:
            import wandb

            group, tags = wandb_labels(args)
            wandb_run = wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=run_args, group=group, tags=tags,
                                   name=os.path.basename(run_dir), save_code=True, reinit="create_new")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(run_dir)

        # TRY NOT TO MODIFY: seeding. A random initial victim and attacker (Algorithms 1-2, line 1)
        rng = np.random.default_rng(seed)
        if args.parametrization == "direct":
            victim_params, attacker_params = rng.uniform(0, 1, 6), rng.uniform(0, 1, 6)
        else:
            victim_params, attacker_params = rng.normal(0, 1, 6), rng.normal(0, 1, 6)
        as_probs = (lambda z: z) if args.parametrization == "direct" else kuhn.sigmoid
        avg_num, avg_den = np.zeros(6), np.zeros(6)
        curves = {k: [] for k in ("iteration", "value", "grad_norm", "worst_last", "gap_last", "worst_avg", "gap_avg")}

        for iteration in range(1, args.iterations + 1):
            # ALGO LOGIC: the attacker's move (Algorithm 1, line 3, or Algorithm 2, line 3)
            if args.defense == "min_oracle":
                attacker_params, _ = kuhn.adversary_best_response(victim, as_probs(victim_params), benign, args.eps_pi)
                if args.parametrization == "softmax":
                    attacker_params = kuhn.logits_of(np.clip(attacker_params, 1e-6, 1 - 1e-6))
            elif args.defense in ("single", "two_timescale"):
                new_attacker = attacker_params
                for _ in range(args.oracle_iters):
                    if args.gradient == "exact":
                        grad_fn = kuhn.attacked_value_and_prob_grads if args.parametrization == "direct" else kuhn.attacked_value_and_grads
                        _, _, g_attacker = grad_fn(victim, victim_params, new_attacker, benign, args.eps_pi)
                    else:
                        _, g_attacker = sampled_grads(victim, as_probs(victim_params), as_probs(new_attacker), benign, args.eps_pi, args.episodes_per_update, rng)
                        g_attacker = g_attacker if args.parametrization == "direct" else g_attacker * as_probs(new_attacker) * (1 - as_probs(new_attacker))
                    new_attacker = new_attacker - attacker_lr * g_attacker  # the attacker descends the victim's value
                    if args.parametrization == "direct":
                        new_attacker = np.clip(new_attacker, 0.0, 1.0)  # the projection onto the simplex
            else:
                new_attacker = attacker_params

            # ALGO LOGIC: the victim's step against the attacker of this iteration (line 4): simultaneous updates, so
            # single and two_timescale step against pi_alpha^t, the min oracle against its best response
            opponent, eps_train = attacker_params, (0.0 if args.defense == "none" else args.eps_pi)
            if args.gradient == "exact":
                grad_fn = kuhn.attacked_value_and_prob_grads if args.parametrization == "direct" else kuhn.attacked_value_and_grads
                value, g_victim, _ = grad_fn(victim, victim_params, opponent, benign, eps_train)
            else:
                g_victim, _ = sampled_grads(victim, as_probs(victim_params), as_probs(opponent), benign, eps_train, args.episodes_per_update, rng)
                g_victim = g_victim if args.parametrization == "direct" else g_victim * as_probs(victim_params) * (1 - as_probs(victim_params))
                value = float("nan")
            victim_params = victim_params + victim_lr * g_victim
            if args.parametrization == "direct":
                victim_params = np.clip(victim_params, 0.0, 1.0)
            if args.defense in ("single", "two_timescale"):
                attacker_params = new_attacker

            # the average iterate: realization-weighted mean of the victim's policies
            probs = as_probs(victim_params)
            weights = reach_weights(victim, probs)
            avg_num += weights * probs
            avg_den += weights

            if iteration % args.log_every == 0 or iteration == args.iterations:
                avg_policy = np.where(avg_den > 0, avg_num / np.maximum(avg_den, 1e-300), 0.5)
                worst_last = kuhn.worst_case_value(victim, probs, benign, args.eps_pi)
                worst_avg = kuhn.worst_case_value(victim, avg_policy, benign, args.eps_pi)
                measures = dict(iteration=iteration, value=float(value), grad_norm=float(np.linalg.norm(g_victim)),
                                worst_last=worst_last, gap_last=optimum - worst_last, worst_avg=worst_avg, gap_avg=optimum - worst_avg)
                for key, v in measures.items():
                    curves[key].append(v)
                    if key != "iteration":
                        writer.add_scalar(f"kuhn/{key}", v, iteration)
                if wandb_run is not None:
                    wandb_run.log({f"kuhn/{k}": v for k, v in measures.items()})

        # TRY NOT TO MODIFY: outputs. The curves (benchmark/kuhn_fig2.py plots them) and the victim's policies
        summary = dict(schema="robust-rl/kuhn/1", args=run_args, robust_optimum=optimum, curves=curves)
        with open(os.path.join(run_dir, "metrics.json.tmp"), "w") as f:
            json.dump(summary, f)
        os.replace(os.path.join(run_dir, "metrics.json.tmp"), os.path.join(run_dir, "metrics.json"))
        kuhn.save_policy(os.path.join(run_dir, "victim_policy.json"), victim, as_probs(victim_params))
        kuhn.save_policy(os.path.join(run_dir, "victim_policy_average.json"), victim, avg_policy)
        if args.save_policy:
            kuhn.save_policy(args.save_policy, victim, as_probs(victim_params))
        print(f"seed {seed}: {args.defense} eps_pi {args.eps_pi:g}: gap {curves['gap_last'][-1]:.4f} (average iterate "
              f"{curves['gap_avg'][-1]:.4f}), worst case {curves['worst_last'][-1]:.4f}, robust optimum {optimum:.4f}; {run_dir}")
        writer.close()
        if wandb_run is not None:
            wandb_run.finish()


class FictitiousPool:
    """Fictitious play's opponents (Heinrich & Silver 2016: a best response to the average of the past strategies,
    played here by drawing one past iterate of the victim per episode). Keeping every iterate grows without bound, so
    the pool is a uniform reservoir sample (Vitter's Algorithm R) of all snapshots added: each of them is in it with the
    same probability size / seen, so a uniformly drawn member is a uniformly drawn past iterate."""

    def __init__(self, size):
        self.size, self.members, self.seen = size, [], 0

    def add(self, snapshot, rng):
        self.seen += 1
        if len(self.members) < self.size:
            self.members.append(snapshot)
        else:
            j = int(rng.integers(self.seen))
            if j < self.size:
                self.members[j] = snapshot

    def sample(self, rng):
        return self.members[int(rng.integers(len(self.members)))]


def actor_snapshot(agent, n):
    """Seed n's current policy as plain numpy, with its normalizer as it is now: an iterate for the fictitious pool."""
    return dict(weights=[(layer.weight[n].detach().numpy().T.copy(), layer.bias[n].detach().numpy().copy()) for layer in agent.actor.layers],
                std=np.exp(agent.actor.log_std[n].detach().numpy()), mean=agent.obs_norm.mean[n].numpy().copy(),
                scale=np.sqrt(agent.obs_norm.var[n].numpy() + agent.obs_norm.eps), clip=agent.obs_norm.clip, tanh=agent.actor.act is torch.tanh)


def snapshot_action(snapshot, raw_obs, noise):
    """A pool member's sampled action for one raw observation [obs_dim] (its own frozen normalizer, then its Gaussian)."""
    x = np.clip((raw_obs - snapshot["mean"]) / snapshot["scale"], -snapshot["clip"], snapshot["clip"]).astype(np.float32)
    for w, b in snapshot["weights"][:-1]:
        x = np.tanh(x @ w + b) if snapshot["tanh"] else np.maximum(x @ w + b, 0.0)
    w, b = snapshot["weights"][-1]
    return x @ w + b + snapshot["std"] * noise


OUTCOME_SCORE = {"win": 1, "draw": 0, "loss": -1}  # the victim's (agent 0's) result of a game
# phase 2's attacker is paid env.adversary_reward(), recorded in each checkpoint: a run saved by the code before it (its
# attacker paid minus the victim's shaped reward) is not resumed into a victim trained against two rewards
ADVERSARY_REWARD = "own_shaping"


def sumo_training_state(n, loop, optimizer, generator, rng, envs, group, run_args):
    """What --resume needs for seed n of a sumo run beyond its weights and normalizer: the phase and its next iteration,
    Adam's state, the RNG streams, the arenas mid-game (envs/sumo.py's get_resume_state), the reward filter, the episode
    counters, the last 100 outcomes and, in fictitious play, the pool and each game's drawn opponent (snapshots stored
    once: pool/{j}/...) and the run's own flags (a benign.safetensors records defense self_play: what the file is).
    Returns (tensors, a JSON-able dict): training_state()'s, without gymnasium envs, plus the arena's parts."""
    # recent_returns: its last 10 outcomes; restore_training_state() reads them, the score's window (100) is below
    tensors, meta = training_state(n, dict(loop, recent_returns=loop["outcomes"]), optimizer, generator, rng, [], group)
    env_meta = []
    for i, env in enumerate(envs):
        physics, state = env.get_resume_state()
        tensors[f"env/{i}/physics"] = torch.from_numpy(physics)
        env_meta.append(state)
    pool = None
    if loop["pools"] is not None:
        snapshots = {}  # id -> index: an opponent drawn before the reservoir replaced it still plays its game
        for snapshot in loop["pools"][n].members + loop["opponents"][n]:
            if id(snapshot) not in snapshots:
                j = snapshots[id(snapshot)] = len(snapshots)
                tensors.update({f"pool/{j}/{k}": torch.from_numpy(snapshot[k]) for k in ("std", "mean", "scale")})
                for layer, (w, b) in enumerate(snapshot["weights"]):
                    tensors[f"pool/{j}/w{layer}"], tensors[f"pool/{j}/b{layer}"] = torch.from_numpy(w), torch.from_numpy(b)
        pool = dict(seen=loop["pools"][n].seen, members=[snapshots[id(s)] for s in loop["pools"][n].members],
                    opponents=[snapshots[id(s)] for s in loop["opponents"][n]], layers=len(loop["opponents"][n][0]["weights"]))
    meta.update(phase=loop["phase"], envs=env_meta, outcomes=loop["outcomes"][n][-100:], pool=pool, args={k: v for k, v in asdict(run_args).items() if k != "resume"},
                adversary_reward=ADVERSARY_REWARD)
    return tensors, meta


def restore_sumo_training_state(resume, learner, optimizer, generators, rngs, envs, pool_size, clip, tanh):
    """The inverse of sumo_training_state() for every seed of the run: restore_training_state() (the learner's weights,
    Adam, the RNG streams, the loop's common variables), then the arenas and the fictitious pool. optimizer None (phase
    1 had finished, phase 2 starts afresh): the RNG streams and the arenas alone. Returns the loop's own variables."""
    seeds = resume["seeds"]
    if optimizer is not None:
        loop = restore_training_state(resume, learner, optimizer, generators, rngs, [[] for _ in seeds])  # no gymnasium envs
    else:
        for n, s in enumerate(seeds):
            generators[n].set_state(s["tensors"]["torch_rng"])
            rngs[n].bit_generator.state = s["meta"]["np_rng"]
        loop = dict(global_step=seeds[0]["meta"]["global_step"])
    pools, opponents = [], []
    for n, s in enumerate(seeds):
        tensors, meta = s["tensors"], s["meta"]
        for i, (env, state) in enumerate(zip(envs[n], meta["envs"])):
            env.set_resume_state(tensors[f"env/{i}/physics"].numpy(), state)
        if meta["pool"] is not None:
            p = meta["pool"]
            snapshots = {}
            for j in sorted(set(p["members"] + p["opponents"])):
                snapshots[j] = dict(weights=[(tensors[f"pool/{j}/w{layer}"].numpy(), tensors[f"pool/{j}/b{layer}"].numpy()) for layer in range(p["layers"])],
                                    **{k: tensors[f"pool/{j}/{k}"].numpy() for k in ("std", "mean", "scale")}, clip=clip, tanh=tanh)
            pool = FictitiousPool(pool_size)
            pools.append(pool)
            opponents.append([snapshots[j] for j in p["opponents"]])
            pool.members, pool.seen = [snapshots[j] for j in p["members"]], p["seen"]
    return dict(loop, outcomes=[list(s["meta"]["outcomes"]) for s in seeds], pools=pools or None, opponents=opponents or None)


def train_sumo(args, resume=None):
    """The sumo arena (envs/sumo.py). Phase 1: the benign policy by self-play (one PPO agent plays both agents and
    learns from both; each seed's run folder gets benign.safetensors). Phase 2: the victim (agent 0) starts from the
    benign policy and plays agent 1 = the benign policy (none), alpha's per-step coin between the frozen benign policy
    and the attacker (single, two_timescale), itself (self_play) or a past iterate of itself (fictitious_play).
    resume (load_resume's): continue from the phase and iteration a checkpoint of either phase saved."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    from attacks.checkpoint import read_checkpoint
    from envs.sumo import parallel_env

    body = args.env_id.split("-", 1)[1]
    seeds = [args.seed + n for n in range(args.num_seeds)]
    seed_args = [dataclasses.replace(args, seed=seed) for seed in seeds]  # what each seed's checkpoint and logs record
    N, E, T = args.num_seeds, args.num_envs, args.num_steps
    if resume is None:
        # the folders are created exclusively: two runs started in the same second must not share (and overwrite) a checkpoint
        os.makedirs("runs", exist_ok=True)
        run_dirs = [tempfile.mkdtemp(prefix=f"{args.env_id}__{args.exp_name}__{seed}__{int(time.time())}_", dir="runs") for seed in seeds]
        for run_dir in run_dirs:
            os.chmod(run_dir, 0o777 & ~UMASK)  # mkdtemp makes it private; a run folder is as readable as any output
    else:  # a resumed run continues in its folders (from benign.safetensors in phase 1, from the victim's in phase 2)
        run_dirs = [os.path.dirname(path) or "." for path in resume["paths"]]
    ckpt_paths = [f"{run_dir}/{args.exp_name}.safetensors" for run_dir in run_dirs]
    benign_paths = [f"{run_dir}/benign.safetensors" for run_dir in run_dirs]

    def report_saved():
        """One line per seed naming its benign policy and its victim (benchmark/grids/sumo.sh reads them)."""
        for n, seed in enumerate(seeds):
            print(f"{f'seed {seed}: ' if N > 1 else ''}benign policy {'from ' + args.benign[n if len(args.benign) > 1 else 0] if args.benign else 'saved to ' + benign_paths[n]}; "
                  f"model saved to {ckpt_paths[n]}")

    num_iterations = {1: max(1, args.benign_timesteps // (E * T)), 2: args.num_iterations}
    if resume is not None:
        resume_meta = resume["seeds"][0]["meta"]
        resume_phase, mid_phase = resume_meta["phase"], resume_meta["iteration"] <= num_iterations[resume_meta["phase"]]
        if resume_phase == 2 and args.defense in ("single", "two_timescale") and resume_meta.get("adversary_reward") != ADVERSARY_REWARD:
            fail(f"--resume {args.resume}: the checkpoint does not record its attacker's reward (older code paid the attacker minus "
                 "the victim's shaped reward, not env.adversary_reward()); resuming could train one victim against two rewards: "
                 "start phase 2 afresh with --benign")
        if resume_phase == 2 and not mid_phase:
            print(f"{args.resume}: the run already finished at step {resume_meta['global_step']}; nothing to resume")
            report_saved()
            sys.exit(0)
        if resume_phase == 1 and os.path.exists(ckpt_paths[0]):
            fail(f"--resume {args.resume}: the run is in phase 2; resume it with --resume {ckpt_paths[0]}")
    git_commit()  # record the code the run starts from, not the one at save time
    wandb_runs = [None] * N
    if args.track:
        import wandb

        group, tags = wandb_labels(args)
        for n in range(N):  # one W&B run per seed, as from single-seed runs
            wandb_runs[n] = wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, group=group, tags=tags, config=vars(seed_args[n]),
                                       name=os.path.basename(os.path.abspath(run_dirs[n])), monitor_gym=False, save_code=True,
                                       id=resume["seeds"][n]["meta"]["wandb_id"] if resume else None, resume="allow", reinit="create_new")
            wandb_runs[n].define_metric("*", step_metric="global_step")
    # resuming drops what the run logged after its checkpoint (those iterations run again)
    writers = [SummaryWriter(run_dir, purge_step=resume_meta["global_step"] if resume else None) for run_dir in run_dirs]
    for writer, a in zip(writers, seed_args):
        writer.add_text("hyperparameters", "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(a).items()])))

    def log(n, tag, value, step):
        """One scalar of seed n to its TensorBoard run, and to its W&B run with --track."""
        writers[n].add_scalar(tag, value, step)
        if wandb_runs[n] is not None:
            wandb_runs[n].log({tag: value, "global_step": step})

    # TRY NOT TO MODIFY: seeding. Every seed has its own streams (numpy: rollout noise, coins, pool draws; torch: init,
    # minibatch order), so seed k of a --num-seeds run is the single-seed run with --seed k
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.torch_threads)
    rngs = [np.random.default_rng(seed) for seed in seeds]
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    # env setup: per seed a plain list of arenas stepped through the lean array API (no dicts); agent 0 is the victim
    envs = [[parallel_env(body) for _ in range(E)] for _ in seeds]
    obs_dim, act_dim = envs[0][0].obs_dim, envs[0][0].n_actions

    # the benign policy: a PPO agent without attacker, trained in phase 1 or loaded from --benign
    benign = Agent(obs_dim, act_dim, dataclasses.replace(args, defense="none"), generators)
    phases = (1, 2)
    if args.benign:
        phases = (2,)
        for n in range(N):
            tensors, _ = read_checkpoint(args.benign[n if len(args.benign) > 1 else 0])
            benign.load_seed_state_dict(n, {k.replace("/", ".", 1): v for k, v in tensors.items() if k.split("/")[0] in ("actor", "critic", "obs_norm")})
    first_phase = phases[0]  # the run's first phase seeds the games
    global_step = 0
    next_obs_raw = np.zeros((N, E, 2, obs_dim))  # [seed, env, agent]: agent 0's and agent 1's raw observations
    if resume is not None:
        # the benign policy as saved (phase 1: the checkpoint is the learner; phase 2: the victim's holds it under benign/)
        for n, s in enumerate(resume["seeds"]):
            weights = s["weights"] if resume_phase == 1 else {k[len("benign."):]: v for k, v in s["weights"].items() if k.startswith("benign.")}
            benign.load_seed_state_dict(n, weights)
        phases = (resume_phase, 2) if resume_phase == 1 and mid_phase else (2,)
        if not mid_phase:  # phase 1 had finished: phase 2 starts as it would have, from the streams phase 1 left
            global_step = restore_sumo_training_state(resume, None, None, generators, rngs, envs, args.pool_size, args.obs_clip, args.activation == "tanh")["global_step"]
    prefix = [f"seed {seed}: " if N > 1 else "" for seed in seeds]
    show_bar = sys.stderr.isatty() if args.progress is None else args.progress
    done_before = (resume_meta["iteration"] - 1) * E * T if resume is not None and mid_phase else 0
    pbar = tqdm(total=sum(num_iterations[p] for p in phases) * E * T, initial=done_before, unit="step", unit_scale=True, disable=not show_bar, dynamic_ncols=True)
    wandb_ids = [s["meta"]["wandb_id"] for s in resume["seeds"]] if resume is not None else [run.id if run is not None else None for run in wandb_runs]
    interrupt.in_loop = True

    for phase in phases:
        # ALGO LOGIC: who learns and who plays agent 1. Phase 1: one agent on both sides, learning from both (S = 2E
        # streams: env i's agent 0 and agent 1); phase 2: the victim learns from agent 0's steps (S = E)
        if phase == 1:
            learner, adversary, opponent, S = benign, None, "self", 2 * E
        else:
            benign.requires_grad_(False)  # frozen from here on: alpha's benign part
            agent = Agent(obs_dim, act_dim, args, generators)  # single, two_timescale: with a fresh attacker (adversary/)
            for n in range(N):  # the victim starts from the benign policy: actor, critic and normalizer
                agent.load_seed_state_dict(n, benign.seed_state_dict(n))
            agent.benign = benign  # a submodule: saved under benign/, never in the optimizer
            learner, adversary, S = agent, agent.adversary, E
            opponent = {"none": "benign", "single": "mix", "two_timescale": "mix", "self_play": "self", "fictitious_play": "pool"}[args.defense]
        batch_size = T * S
        minibatch_size = batch_size // args.num_minibatches
        # ALGO LOGIC: the attacker's learning rates are the victim's times --timescale-ratio (two_timescale) or equal (single)
        adversary_lrs = [args.attacker_lr, args.attacker_lr * args.value_learning_rate / args.learning_rate] if adversary is not None else []
        optimizer = torch.optim.Adam(
            [{"params": learner.actor.parameters(), "lr": args.learning_rate}, {"params": learner.critic.parameters(), "lr": args.value_learning_rate}]
            + ([{"params": adversary.actor.parameters(), "lr": adversary_lrs[0]}, {"params": adversary.critic.parameters(), "lr": adversary_lrs[1]}] if adversary is not None else []),
            eps=1e-5,
            fused=True,
        )
        base_lrs = [args.learning_rate, args.value_learning_rate, *adversary_lrs]

        # ALGO Logic: Storage setup (normalized observations, as each network saw them) [step, seed, stream, ...]
        obs = np.zeros((T, N, S, obs_dim), dtype=np.float32)
        actions = np.zeros((T, N, S, act_dim), dtype=np.float32)
        rewards = np.zeros((T, N, S), dtype=np.float32)
        adv_rewards = np.zeros((T, N, S), dtype=np.float32)  # phase 2: the attacker's (envs.sumo's adversary_reward)
        ends = np.zeros((T, N, S), dtype=np.float32)
        adv_obs = np.zeros((T, N, E, obs_dim), dtype=np.float32)  # agent 1's observation through the benign normalizer
        adv_actions = np.zeros((T, N, E, act_dim), dtype=np.float32)

        pools = opponents = None
        if resume is not None and phase == resume_phase and mid_phase:
            # exactly where the saved run stopped: Adam, RNG streams, games mid-play, filters, the fictitious pool
            state = restore_sumo_training_state(resume, learner, optimizer, generators, rngs, envs, args.pool_size, args.obs_clip, args.activation == "tanh")
            start_iteration, global_step, next_obs_raw, ret_acc, ret_mean, ret_var, ret_count, ep_return, ep_length, outcomes, pools, opponents = (
                state[k] for k in ("iteration", "global_step", "next_obs_raw", "ret_acc", "ret_mean", "ret_var", "ret_count", "ep_return", "ep_length",
                                   "outcomes", "pools", "opponents")
            )
            print(f"resumed {args.resume} at step {global_step} (phase {phase})" + (f" ({N} seeds)" if N > 1 else ""), flush=True)
        else:
            # TRY NOT TO MODIFY: start the games (a new phase starts new games; the run's first reset is seeded)
            start_iteration = 1
            for n, (seed, envs_n) in enumerate(zip(seeds, envs)):
                for i, env in enumerate(envs_n):
                    next_obs_raw[n, i] = env.reset_array(seed + i if phase == first_phase else None)
            ret_acc = np.zeros((N, S))  # discounted return per stream, for reward scaling
            ret_mean, ret_var, ret_count = np.zeros(N), np.ones(N), np.full(N, 1e-4)
            ep_return, ep_length = np.zeros((N, E)), np.zeros((N, E), dtype=np.int64)
            outcomes = [[] for _ in seeds]  # agent 0's results (+1 win, 0 draw, -1 loss), for the score curve (Fig. 4a)
            if opponent == "pool":  # fictitious play: the pool starts with the initial victim; each game draws its opponent
                pools = [FictitiousPool(args.pool_size) for _ in seeds]
                for n in range(N):
                    pools[n].add(actor_snapshot(learner, n), rngs[n])
                opponents = [[pools[n].sample(rngs[n]) for _ in range(E)] for n in range(N)]
        start_step, start_time = global_step, time.time()  # each phase's SPS counts its own steps

        for iteration in range(start_iteration, num_iterations[phase] + 1):
            # Annealing the rate if instructed to do so.
            if args.anneal_lr:
                frac = 1.0 - (iteration - 1.0) / num_iterations[phase]
                for group, lr in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = frac * lr
            # the dense shaping falls from 1 to 0 over the first --shaping-anneal of the phase, as Bansal et al. (2018)
            # anneal their exploration reward: the policies end up playing for the win alone
            shaping = max(0.0, 1.0 - (iteration - 1.0) / (args.shaping_anneal * num_iterations[phase])) if args.shaping_anneal > 0 else 0.0
            for envs_n in envs:
                for env in envs_n:
                    env.set_shaping(shaping)
            if opponent == "pool" and iteration > 1:  # the iterate that the last update produced joins the pool
                for n in range(N):
                    pools[n].add(actor_snapshot(learner, n), rngs[n])

            actor_mean = learner.numpy_actor()
            std = np.exp(learner.actor.log_std.detach().numpy())[:, None]
            # one noise row per agent of each env: agent 1's row samples whichever policy plays agent 1
            noise = np.stack([rng.standard_normal((T, E, 2, act_dim)) for rng in rngs], 1).astype(np.float32)
            if opponent in ("benign", "mix"):
                benign_mean, benign_std = benign.numpy_actor(), np.exp(benign.actor.log_std.detach().numpy())[:, None]
            # ALGO LOGIC: the attacker's actions and the per-step, per-env Bernoulli(eps_pi) coin: whose action agent 1 executes
            if adversary is not None:
                adv_mean, adv_std = adversary.numpy_actor(), np.exp(adversary.actor.log_std.detach().numpy())[:, None]
                adv_noise = np.stack([rng.standard_normal((T, E, act_dim)) for rng in rngs], 1).astype(np.float32)
                coins = np.stack([rng.random((T, E)) < args.eps_pi for rng in rngs], 1)
            else:
                coins = np.zeros((T, N, E), dtype=bool)
            for step in range(0, T):
                global_step += E
                # the learner's normalizer follows the observations it learns from: both agents' (phase 1), agent 0's (phase 2)
                learner.obs_norm.update(next_obs_raw.reshape(N, 2 * E, obs_dim) if phase == 1 else next_obs_raw[:, :, 0])
                x = learner.obs_norm.normalize_np(next_obs_raw.reshape(N, 2 * E, obs_dim))
                a = (actor_mean(x) + std * noise[step].reshape(N, 2 * E, act_dim)).reshape(N, E, 2, act_dim)
                if phase == 1:
                    obs[step], actions[step] = x, a.reshape(N, 2 * E, act_dim)
                else:
                    obs[step], actions[step] = x.reshape(N, E, 2, obs_dim)[:, :, 0], a[:, :, 0]

                # ALGO LOGIC: agent 1's action: the learner itself (self-play), the frozen benign policy, alpha's coin
                # between the benign policy and the attacker, or a past iterate (fictitious play)
                a1 = a[:, :, 1]
                if opponent in ("benign", "mix"):
                    x1 = benign.obs_norm.normalize_np(next_obs_raw[:, :, 1])
                    a1 = benign_mean(x1) + benign_std * noise[step][:, :, 1]
                    if adversary is not None:
                        adv_obs[step] = x1
                        adv_actions[step] = adv_mean(x1) + adv_std * adv_noise[step]
                        a1 = np.where(coins[step][..., None], adv_actions[step], a1)
                elif opponent == "pool":
                    a1 = np.array([[snapshot_action(opponents[n][i], next_obs_raw[n, i, 1], noise[step][n, i, 1]) for i in range(E)] for n in range(N)])

                # TRY NOT TO MODIFY: execute the game and log data (MuJoCo clips the controls to [-1, 1])
                for n, envs_n in enumerate(envs):
                    for i, env in enumerate(envs_n):
                        o, (r0, r1), done = env.step_array(np.stack([a[n, i, 0], a1[n, i]]))
                        if phase == 1:
                            rewards[step, n, 2 * i], rewards[step, n, 2 * i + 1] = r0, r1
                            ends[step, n, 2 * i] = ends[step, n, 2 * i + 1] = done
                        else:
                            rewards[step, n, i], ends[step, n, i] = r0, done
                            adv_rewards[step, n, i] = env.adversary_reward()
                        ep_return[n, i] += r0
                        ep_length[n, i] += 1
                        if done:
                            outcomes[n].append(OUTCOME_SCORE[env.outcomes[0]])
                            log(n, "charts/episodic_return", ep_return[n, i], global_step)
                            log(n, "charts/episodic_length", ep_length[n, i], global_step)
                            ep_return[n, i], ep_length[n, i] = 0.0, 0
                            o = env.reset_array()
                            if opponent == "pool":
                                opponents[n][i] = pools[n].sample(rngs[n])
                        next_obs_raw[n, i] = o
                # reward scaling: divide by the running std of the discounted return (SA-PPO's RewardFilter), per seed
                ret_acc = ret_acc * args.gamma + rewards[step]
                b_mean = ret_acc.sum(1) / S
                b_var = np.square(ret_acc - b_mean[:, None]).sum(1) / S
                delta, tot = b_mean - ret_mean, ret_count + S
                ret_var = (ret_var * ret_count + b_var * S + delta**2 * ret_count * S / tot) / tot
                ret_mean, ret_count = ret_mean + delta * S / tot, tot
                rewards[step] = np.clip(rewards[step] / np.sqrt(ret_var[:, None] + 1e-8), -args.reward_clip, args.reward_clip)
                # ALGO LOGIC: phase 2's attacker is paid minus the victim's game result plus agent 1's own shaping (not
                # minus the victim's shaping: that pays keeping away, and attackers settle for draws), on the victim's scale
                adv_rewards[step] = np.clip(adv_rewards[step] / np.sqrt(ret_var[:, None] + 1e-8), -args.reward_clip, args.reward_clip)
                ret_acc[ends[step] > 0] = 0.0

            # values and log-probs for the whole rollout in one batched pass; [seed, step * stream]. The game's time
            # limit is a rule (time left is observed): every end is a termination, nothing to bootstrap
            with torch.no_grad():
                t_obs = torch.from_numpy(obs.transpose(1, 0, 2, 3).reshape(N, -1, obs_dim))
                t_actions = torch.from_numpy(actions.transpose(1, 0, 2, 3).reshape(N, -1, act_dim))
                _, t_logprobs, _, t_values = learner.get_action_and_value(t_obs, t_actions)
                values = t_values.numpy().reshape(N, T, S).transpose(1, 0, 2)
                next_x = learner.obs_norm.normalize_np(next_obs_raw.reshape(N, 2 * E, obs_dim))
                next_x = next_x if phase == 1 else np.ascontiguousarray(next_x.reshape(N, E, 2, obs_dim)[:, :, 0])
                next_value = learner.get_value(torch.from_numpy(next_x)).numpy().reshape(N, S)
                if adversary is not None:  # the same for the attacker, with its critic on agent 1's observations
                    t_adv_obs = torch.from_numpy(adv_obs.transpose(1, 0, 2, 3).reshape(N, -1, obs_dim))
                    t_adv_actions = torch.from_numpy(adv_actions.transpose(1, 0, 2, 3).reshape(N, -1, act_dim))
                    _, t_adv_logprobs, _, t_adv_values = adversary.get_action_and_value(t_adv_obs, t_adv_actions)
                    adv_values = t_adv_values.numpy().reshape(N, T, E).transpose(1, 0, 2)
                    adv_next_value = adversary.get_value(torch.from_numpy(benign.obs_norm.normalize_np(next_obs_raw[:, :, 1]))).numpy().reshape(N, E)

            advantages = compute_gae(rewards, values, ends, next_value, args.gamma, args.gae_lambda)
            returns = advantages + values
            if adversary is not None:
                adv_advantages = compute_gae(adv_rewards, adv_values, ends, adv_next_value, args.gamma, args.gae_lambda)
                adv_returns = adv_advantages + adv_values

            # flatten the batch (per seed)
            b_obs, b_logprobs, b_actions = t_obs, t_logprobs, t_actions
            b_advantages = torch.from_numpy(advantages.transpose(1, 0, 2).reshape(N, -1))
            b_returns = torch.from_numpy(returns.transpose(1, 0, 2).reshape(N, -1))
            b_values = torch.from_numpy(values.transpose(1, 0, 2).reshape(N, -1))
            b_attacked = torch.from_numpy(coins.transpose(1, 0, 2).reshape(N, -1).astype(np.float32))  # 1: the attacker acted
            if adversary is not None:
                b_adv = (t_adv_obs, t_adv_actions, t_adv_logprobs,
                         *(torch.from_numpy(a.transpose(1, 0, 2).reshape(N, -1)) for a in (adv_advantages, adv_returns, adv_values)), b_attacked)

            # Optimizing the policy and value network: every line below is per seed along dim 0 ([seed, sample, ...])
            clipfracs = []
            attacker_clipfracs = []
            seed_rows = torch.arange(N).unsqueeze(1)
            for epoch in range(args.update_epochs):
                b_inds = torch.stack([torch.randperm(batch_size, generator=g) for g in generators])  # each seed its own order
                # shuffle once per epoch, then take contiguous slices: one gather per tensor instead of one per minibatch
                e_obs, e_actions, e_logprobs, e_advantages, e_returns, e_values = (
                    t[seed_rows, b_inds] for t in (b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values)
                )
                e_adv = tuple(t[seed_rows, b_inds] for t in b_adv) if adversary is not None else ()
                for start in range(0, batch_size, minibatch_size):
                    mb_inds = slice(start, start + minibatch_size)

                    _, newlogprob, entropy, newvalue = learner.get_action_and_value(e_obs[:, mb_inds], e_actions[:, mb_inds])
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

                    # Policy loss: agent 0 always plays the victim's own action (the attacker takes over agent 1, not the victim)
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

                    # ALGO LOGIC: the attacker's PPO step in the same minibatch (simultaneous updates, Algorithm 2): its
                    # policy loss on the steps it acted, its critic on all; its own learning rate sets the timescale
                    if adversary is not None:
                        attacker_loss, (attacker_kl, attacker_clipfrac) = adversary_loss(adversary, *(t[:, mb_inds] for t in e_adv), args)
                        attacker_clipfracs.append(attacker_clipfrac)
                        loss = loss + attacker_loss

                    optimizer.zero_grad()
                    loss.sum().backward()  # the seeds' parameters are disjoint: each seed's gradient is that of its own loss
                    victim_grad_norm = torch.stack([p.grad.flatten(1).norm(dim=1) for p in learner.actor.parameters()]).norm(dim=0)
                    if args.max_grad_norm > 0:
                        clip_grad_norm_per_seed(learner.actor.parameters(), args.max_grad_norm)
                        clip_grad_norm_per_seed(learner.critic.parameters(), args.max_grad_norm)
                        if adversary is not None:
                            clip_grad_norm_per_seed(adversary.actor.parameters(), args.max_grad_norm)
                            clip_grad_norm_per_seed(adversary.critic.parameters(), args.max_grad_norm)
                    optimizer.step()

                if args.target_kl is not None and approx_kl.item() > args.target_kl:
                    break

            y_pred, y_true = b_values.numpy(), b_returns.numpy()
            var_y = np.var(y_true, axis=1)
            explained_var = np.where(var_y == 0, np.nan, 1 - np.var(y_true - y_pred, axis=1) / np.where(var_y == 0, 1, var_y))

            # TRY NOT TO MODIFY: record rewards for plotting purposes. score = wins - losses of agent 0 over its last 100
            # games: the victim's value against alpha (Fig. 4a)
            recent = [np.array(o[-100:]) if o else np.full(1, np.nan) for o in outcomes]
            sps = int((global_step - start_step) * N / (time.time() - start_time))
            metrics = {
                "charts/phase": phase,
                "charts/shaping": shaping,
                "charts/learning_rate": optimizer.param_groups[0]["lr"],
                "charts/score": [float(np.mean(r)) for r in recent],
                "charts/win_rate": [float(np.mean(r == 1)) if o else math.nan for r, o in zip(recent, outcomes)],
                "charts/draw_rate": [float(np.mean(r == 0)) if o else math.nan for r, o in zip(recent, outcomes)],
                "charts/loss_rate": [float(np.mean(r == -1)) if o else math.nan for r, o in zip(recent, outcomes)],
                "losses/value_loss": v_loss.detach(),
                "losses/policy_loss": pg_loss.detach(),
                "losses/entropy": entropy_loss.detach(),
                "losses/old_approx_kl": old_approx_kl,
                "losses/approx_kl": approx_kl,
                "losses/clipfrac": torch.stack(clipfracs).mean(0),
                "losses/explained_variance": explained_var,
                "adversary/share": b_attacked.mean(1),  # of agent 1's steps, the attacker's
                "adversary/loss": attacker_loss.detach() if adversary is not None else math.nan,
                # how far the attacker moved in the iteration (PPO's clip, not only its learning rate, bounds it)
                "adversary/approx_kl": attacker_kl if adversary is not None else math.nan,
                "adversary/clipfrac": torch.stack(attacker_clipfracs).mean(0) if adversary is not None else math.nan,
                "adversary/log_std": adversary.actor.log_std.detach().mean(1) if adversary is not None else math.nan,
                "adversary/victim_grad_norm": victim_grad_norm,  # the paper's Fig. 4b
                "charts/SPS": sps,
            }
            if opponent == "pool":
                metrics["fictitious/pool_size"] = [len(p.members) for p in pools]
            for tag, value in metrics.items():  # per-seed tensors, arrays and lists go to their seed's run, numbers to all
                values = value.tolist() if isinstance(value, (torch.Tensor, np.ndarray)) else value if isinstance(value, list) else [value] * N
                for n in range(N):
                    log(n, tag, values[n], global_step)
            score = float(np.mean([np.mean(r) for r, o in zip(recent, outcomes) if o])) if any(outcomes) else math.nan
            pbar.update(E * T)
            pbar.set_postfix(phase=phase, score=f"{score:.2f}", sps=sps, refresh=False)
            if not show_bar and (iteration == 1 or iteration % max(1, num_iterations[phase] // 20) == 0 or iteration == num_iterations[phase]):
                eta = (num_iterations[phase] - iteration) * E * T * N / max(sps, 1)
                print(f"phase {phase} iter {iteration}/{num_iterations[phase]} step {global_step} score(last100) {score:.2f} SPS {sps} ETA {eta/60:.1f} min", flush=True)
            if args.save_model and ((args.save_every and iteration % args.save_every == 0) or interrupt.signum or iteration == num_iterations[phase]):
                # phase 1 writes the benign policy in the common format; phase 2 the victim, with benign/ (and adversary/)
                paths = benign_paths if phase == 1 else ckpt_paths
                loop = dict(phase=phase, iteration=iteration + 1, global_step=global_step, next_obs_raw=next_obs_raw, ret_acc=ret_acc, ret_mean=ret_mean,
                            ret_var=ret_var, ret_count=ret_count, ep_return=ep_return, ep_length=ep_length, outcomes=outcomes, pools=pools,
                            opponents=opponents, wandb_ids=wandb_ids)
                for n in range(N):
                    group = [os.path.relpath(path, os.path.dirname(paths[n])) for path in paths]
                    state = sumo_training_state(n, loop, optimizer, generators[n], rngs[n], envs[n], group, seed_args[n])
                    save_checkpoint(paths[n], learner, n, dataclasses.replace(seed_args[n], defense="self_play") if phase == 1 else seed_args[n], global_step,
                                    resume_state=state, complete=iteration == num_iterations[phase])
                interrupt.saved = paths[0] if N == 1 else f"{paths[0]} and the other {N - 1} seeds'"
            if interrupt.signum:
                pbar.close()
                for writer in writers:
                    writer.close()
                saved = f"saved {interrupt.saved}; resume with --resume {(benign_paths if phase == 1 else ckpt_paths)[0]}" if args.save_model else "nothing saved (--no-save-model)"
                print(f"interrupted at step {global_step} (phase {phase}); {saved}", file=sys.stderr, flush=True)
                sys.exit(128 + interrupt.signum)
    interrupt.in_loop = False
    pbar.close()

    if args.save_model:
        report_saved()
    if args.eval_episodes > 0:
        from eval_attacks import evaluate_arena

        for n, seed in enumerate(seeds):  # seed n's frozen victim against its benign policy, as eval_attacks.py plays them
            scores = evaluate_arena(agent.policy(n, args), benign.policy(n, args), args.env_id, episodes=args.eval_episodes, seed=seed + 10_000)
            rates = {k: float(np.mean(scores == v)) for k, v in OUTCOME_SCORE.items()}
            for k, v in rates.items():
                log(n, f"eval/{k}_rate", v, global_step)
            print(f"{prefix[n]}eval against the benign policy: win {rates['win']:.2f} draw {rates['draw']:.2f} loss {rates['loss']:.2f} over {args.eval_episodes} games")
    for envs_n in envs:
        for env in envs_n:
            env.close()
    for writer, run in zip(writers, wandb_runs):
        writer.close()
        if run is not None:
            run.finish()


if __name__ == "__main__":
    interrupt = Interrupt()
    quiet_warnings()
    args = tyro.cli(Args)
    if args.env_id == "kuhn" and not args.resume:  # the tabular setting: its own loop (below), no env, no checkpoint
        train_kuhn(resolve_args(args))
        sys.exit(0)
    resume = None
    if args.resume:
        args, resume = load_resume(args)
    if args.env_id.startswith("sumo"):  # the two-agent arena: its own loop (above), two phases
        train_sumo(resolve_args(args), resume)
        sys.exit(0)
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
    adversary = agent.adversary
    # the fused path: victim and attacker as one stacked agent (rows [0, N) the victim's, [N, 2N) the attacker's)
    joint = Joint(agent, adversary) if adversary is not None and args.fused_update else None
    # ALGO LOGIC: the attacker's learning rates are the victim's times --timescale-ratio (two_timescale) or equal (single)
    adversary_lrs = [args.attacker_lr, args.attacker_lr * args.value_learning_rate / args.learning_rate] if adversary is not None else []
    optimizer = torch.optim.Adam(
        [{"params": agent.actor.parameters(), "lr": args.learning_rate}, {"params": agent.critic.parameters(), "lr": args.value_learning_rate}]
        + ([{"params": adversary.actor.parameters(), "lr": adversary_lrs[0]}, {"params": adversary.critic.parameters(), "lr": adversary_lrs[1]}] if adversary is not None else []),
        eps=1e-5,
        fused=True,  # one kernel per tensor: a third of the default Adam's cost at these sizes; elementwise, so per seed
    )
    base_lrs = [args.learning_rate, args.value_learning_rate, *adversary_lrs]

    # ALGO Logic: Storage setup (normalized observations, as the actor saw them) [step, seed, env, ...]
    obs = np.zeros((args.num_steps, N, args.num_envs, obs_dim), dtype=np.float32)
    actions = np.zeros((args.num_steps, N, args.num_envs, act_dim), dtype=np.float32)
    adv_actions = np.zeros((args.num_steps, N, args.num_envs, act_dim), dtype=np.float32)
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
        print(f"resumed {args.resume} at step {global_step}" + (f" ({N} seeds)" if N > 1 else ""), flush=True)
    start_time, start_step = time.time(), global_step
    prefix = [f"seed {seed}: " if N > 1 else "" for seed in seeds]

    from tqdm import tqdm

    show_bar = sys.stderr.isatty() if args.progress is None else args.progress
    pbar = tqdm(total=args.num_iterations * args.batch_size, initial=global_step, unit="step", unit_scale=True, disable=not show_bar, dynamic_ncols=True)
    interrupt.in_loop = True
    # ALGO LOGIC: the rollouts of one victim iteration. --oracle-iters K: the attacker takes K PPO iterations per victim
    # iteration, the first ones on rollouts of their own with the victim frozen (its weights, normalizer, Adam state and
    # step count). min_oracle (Algorithm 1, its min oracle approximated by PPO): K attacker-only rollouts, then the
    # victim learns against the attacker held fixed; single / two_timescale: K - 1, then both learn from one rollout.
    attacker_only_rollouts = args.oracle_iters if args.defense == "min_oracle" else args.oracle_iters - 1
    rollouts = ((iteration, sub < attacker_only_rollouts) for iteration in range(start_iteration, args.num_iterations + 1) for sub in range(attacker_only_rollouts + 1))
    victim_params = [*agent.actor.parameters(), *agent.critic.parameters()]
    attacker_params = [*adversary.actor.parameters(), *adversary.critic.parameters()] if adversary is not None else []
    attacker_stats = (math.nan, math.nan)
    for iteration, attacker_only in rollouts:
        attacker_learns = adversary is not None and (attacker_only or args.defense != "min_oracle")
        # Annealing the rate if instructed to do so.
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = frac * lr

        actor_mean = agent.numpy_actor()
        std = np.exp(agent.actor.log_std.detach().numpy())[:, None]
        noise = np.stack([rng.standard_normal((args.num_steps, args.num_envs, act_dim)) for rng in rngs], 1).astype(np.float32)
        # ALGO LOGIC: the attacker's actions and the per-step, per-env Bernoulli(eps_pi) coin: whose action is executed
        if adversary is not None:
            adv_mean, adv_std = adversary.numpy_actor(), np.exp(adversary.actor.log_std.detach().numpy())[:, None]
            adv_noise = np.stack([rng.standard_normal((args.num_steps, args.num_envs, act_dim)) for rng in rngs], 1).astype(np.float32)
            coins = np.stack([rng.random((args.num_steps, args.num_envs)) < args.eps_pi for rng in rngs], 1)
        else:
            coins = np.zeros((args.num_steps, N, args.num_envs), dtype=bool)
        if joint is not None:  # both actors in one forward per step: the same draws, stacked [step, 2N, env, ...]
            joint_mean, joint_std, joint_noise = joint.numpy_actor(), np.concatenate((std, adv_std)), np.concatenate((noise, adv_noise), axis=1)
        final_obs, final_idx = [], []  # truncated episodes: bootstrap from V(final observation)
        for step in range(0, args.num_steps):
            if not attacker_only:  # global_step counts the victim's steps
                global_step += args.num_envs
                agent.obs_norm.update(next_obs_raw)
            x = agent.obs_norm.normalize_np(next_obs_raw)
            obs[step] = x

            # ALGO LOGIC: action logic
            if joint is not None:
                both = joint_mean(np.concatenate((x, x))) + joint_std * joint_noise[step]
                actions[step], adv_actions[step] = both[:N], both[N:]
                action = np.where(coins[step][..., None], both[N:], both[:N])
            else:
                action = actor_mean(x) + std * noise[step]
                actions[step] = action
                if adversary is not None:
                    adv_actions[step] = adv_mean(x) + adv_std * adv_noise[step]
                    action = np.where(coins[step][..., None], adv_actions[step], action)

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
                        if not attacker_only:  # the training curve is the victim's rollouts' (their steps give the x axis)
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

        adv_rewards = -rewards  # the attacker is paid minus the victim's (scaled) reward, bootstrapped by its own critic

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

            if adversary is not None:  # the same for the attacker, with its critic
                t_adv_actions = torch.from_numpy(adv_actions.transpose(1, 0, 2, 3).reshape(N, -1, act_dim))
                _, t_adv_logprobs, _, t_adv_values = adversary.get_action_and_value(t_obs, t_adv_actions)
                adv_values = t_adv_values.numpy().reshape(N, args.num_steps, args.num_envs).transpose(1, 0, 2)
                adv_next_value = adversary.get_value(torch.from_numpy(agent.obs_norm.normalize_np(next_obs_raw))).numpy().reshape(N, args.num_envs)
                for n in range(N):
                    idx = [j for j, (_, seed_n, _) in enumerate(final_idx) if seed_n == n]
                    if idx:
                        final_values = adversary.get_value(torch.from_numpy(np.stack([final_obs[j] for j in idx]))[None], seed=n).numpy().reshape(-1)
                        for j, v in zip(idx, final_values):
                            s, _, i = final_idx[j]
                            adv_rewards[s, n, i] += args.gamma * v

        # bootstrap value if not done
        advantages = compute_gae(rewards, values, ends, next_value, args.gamma, args.gae_lambda)
        returns = advantages + values
        if adversary is not None:
            adv_advantages = compute_gae(adv_rewards, adv_values, ends, adv_next_value, args.gamma, args.gae_lambda)
            adv_returns = adv_advantages + adv_values

        # flatten the batch (per seed)
        b_obs = t_obs
        b_logprobs = t_logprobs
        b_actions = t_actions
        b_advantages = torch.from_numpy(advantages.transpose(1, 0, 2).reshape(N, -1))
        b_returns = torch.from_numpy(returns.transpose(1, 0, 2).reshape(N, -1))
        b_values = torch.from_numpy(values.transpose(1, 0, 2).reshape(N, -1))
        b_attacked = torch.from_numpy(coins.transpose(1, 0, 2).reshape(N, -1).astype(np.float32))  # 1: the attacker acted
        if adversary is not None:
            b_adv = tuple(torch.from_numpy(a.transpose(1, 0, 2).reshape(N, -1)) for a in (adv_advantages, adv_returns, adv_values))
            b_adv = (t_adv_actions, t_adv_logprobs, *b_adv)
        # what the loss below reads; the last: the steps whose action counts in the policy loss (the victim's own)
        batch, learner = (b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values, 1.0 - b_attacked), agent
        if joint is not None:  # fused: the attacker's batch as rows [N, 2N), its policy loss on the steps it acted
            batch, learner = tuple(torch.cat((v, a)) for v, a in zip(batch, (b_obs, *b_adv, b_attacked))), joint

        # Optimizing the policy and value network: every line below is per seed along dim 0 ([seed, sample, ...]; fused:
        # [victim's seeds and attacker's seeds, sample, ...], one loss, one backward)
        clipfracs, attacker_clipfracs = [], []
        rows = torch.arange(len(batch[0])).unsqueeze(1)
        for epoch in range(args.update_epochs):
            b_inds = torch.stack([torch.randperm(args.batch_size, generator=g) for g in generators])  # each seed its own order
            # shuffle once per epoch, then take contiguous slices: one gather per tensor instead of one per minibatch;
            # the attacker's rows take its seed's order (the victim's and attacker's minibatches are the same steps)
            e_obs, e_actions, e_logprobs, e_advantages, e_returns, e_values, e_acted = (t[rows, b_inds.repeat(len(rows) // N, 1)] for t in batch)
            e_adv = tuple(t[rows, b_inds] for t in (*b_adv, b_attacked)) if adversary is not None and joint is None else ()
            for start in range(0, args.batch_size, args.minibatch_size):
                mb_inds = slice(start, start + args.minibatch_size)

                _, newlogprob, entropy, newvalue = learner.get_action_and_value(e_obs[:, mb_inds], e_actions[:, mb_inds])
                logratio = newlogprob - e_logprobs[:, mb_inds]
                ratio = logratio.exp()

                with torch.no_grad():
                    # calculate approx_kl http://joschu.net/blog/kl-approx.html (the victim's rows)
                    old_approx_kl = (-logratio[:N]).mean(1)
                    approx_kl = ((ratio[:N] - 1) - logratio[:N]).mean(1)
                    clipfracs.append(((ratio[:N] - 1.0).abs() > args.clip_coef).float().mean(1))
                    if joint is not None:  # the attacker's rows, as adversary_loss reports them
                        attacker_kl = ((ratio[N:] - 1) - logratio[N:]).mean(1)
                        attacker_clipfracs.append(((ratio[N:] - 1.0).abs() > args.clip_coef).float().mean(1))

                mb_advantages = e_advantages[:, mb_inds]
                if args.norm_adv:  # each row over the steps its agent acted (masked_normalize says why)
                    mb_advantages = masked_normalize(mb_advantages, e_acted[:, mb_inds])

                # Policy loss
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = masked_mean(torch.max(pg_loss1, pg_loss2), e_acted[:, mb_inds])  # the steps the row's agent acted (the victim's rows: its own)

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

                # ALGO LOGIC: the attacker's PPO step in the same minibatch (simultaneous updates, Algorithm 2); its own
                # learning rate sets the timescale. Fused: its loss is rows [N, 2N) of the one above (adversary_loss's terms)
                if joint is not None:
                    attacker_loss = loss[N:]
                elif adversary is not None:
                    attacker_loss, (attacker_kl, attacker_clipfrac) = adversary_loss(adversary, e_obs[:, mb_inds], *(t[:, mb_inds] for t in e_adv), args)
                    attacker_clipfracs.append(attacker_clipfrac)
                    loss = loss + attacker_loss

                optimizer.zero_grad()
                loss.sum().backward()  # the seeds' (and victim's and attacker's) parameters are disjoint: each gets its own loss's gradient
                if start + args.minibatch_size == args.batch_size:  # logged once per iteration: the epoch's last minibatch's
                    victim_grad_norm = torch.stack([p.grad.flatten(1).norm(dim=1) for p in agent.actor.parameters()]).norm(dim=0)
                # ALGO LOGIC: who learns from this rollout; Adam skips a parameter without a gradient (state and step count too)
                for p in victim_params if attacker_only else attacker_params if args.defense == "min_oracle" else ():
                    p.grad = None
                if args.max_grad_norm > 0:
                    for module in (() if attacker_only else (agent.actor, agent.critic)) + ((adversary.actor, adversary.critic) if attacker_learns else ()):
                        clip_grad_norm_per_seed(module.parameters(), args.max_grad_norm)
                optimizer.step()

            # the victim's KL decides; in the attacker's own iterations (min_oracle, --oracle-iters), the attacker's
            if args.target_kl is not None and (attacker_kl if attacker_only else approx_kl).item() > args.target_kl:
                break
        if attacker_learns:  # logged with the victim's iteration: the attacker's last update's
            attacker_stats = (attacker_kl, torch.stack(attacker_clipfracs).mean(0))
        if attacker_only:  # the victim iteration's own rollout follows
            continue

        y_pred, y_true = b_values.numpy(), b_returns.numpy()
        var_y = np.var(y_true, axis=1)
        explained_var = np.where(var_y == 0, np.nan, 1 - np.var(y_true - y_pred, axis=1) / np.where(var_y == 0, 1, var_y))

        # TRY NOT TO MODIFY: record rewards for plotting purposes
        sps = int((global_step - start_step) * N / (time.time() - start_time))
        metrics = {
            "charts/learning_rate": optimizer.param_groups[0]["lr"],
            "losses/value_loss": v_loss[:N].detach(),  # the victim's rows
            "losses/policy_loss": pg_loss[:N].detach(),
            "losses/entropy": entropy_loss[:N].detach(),
            "losses/old_approx_kl": old_approx_kl,
            "losses/approx_kl": approx_kl,
            "losses/clipfrac": torch.stack(clipfracs).mean(0),
            "losses/explained_variance": explained_var,
            "adversary/share": b_attacked.mean(1),  # of the steps, the attacker's
            "adversary/loss": attacker_loss.detach() if adversary is not None else math.nan,
            # how far the attacker moved in its last update (PPO's clip, not only its learning rate, bounds it)
            "adversary/approx_kl": attacker_stats[0] if adversary is not None else math.nan,
            "adversary/clipfrac": attacker_stats[1] if adversary is not None else math.nan,
            "adversary/log_std": adversary.actor.log_std.detach().mean(1) if adversary is not None else math.nan,
            "adversary/victim_grad_norm": victim_grad_norm,  # the paper's Fig. 4b
            "charts/SPS": sps,
        }
        for tag, value in metrics.items():  # per-seed tensors and arrays go to their seed's run, numbers to all
            values = value.tolist() if isinstance(value, (torch.Tensor, np.ndarray)) else [value] * N
            for n in range(N):
                log(n, tag, values[n], global_step)
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
                save_checkpoint(ckpt_paths[n], agent, n, seed_args[n], global_step, resume_state=state)
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
