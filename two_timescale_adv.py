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
    min_oracle     Algorithm 1: the attacker is the exact best response to the current victim (a game-tree search)
with victim lr = --attacker-lr / --timescale-ratio for every defense (single: the attacker at that lr too).

Setting (--env-id):
    kuhn   Kuhn poker, exact (envs/kuhn.py): tabular policies P(bet or call) per information state, the victim
           --victim-player (2) against alpha = the other player with a uniform benign policy. Gradients exact or
           from sampled episodes (--gradient), steps projected onto [0, 1] (Algorithms 1-2, --parametrization direct)
           or on logits (softmax). Every --log-every iterations, exactly: the victim's worst case and
           gap = robust optimum - worst case (0 = most robust) for the last and the average iterate.
The MuJoCo settings (PR-MDP, the sumo arena) are not part of this version: their --env-id is refused.

Reproduce Fig. 2 (gap vs iteration, min_oracle / two_timescale 10 and 100 / single, eps_pi 0.5 and 1.0, 5 seeds):
    python benchmark/kuhn_fig2.py
One run:
    python two_timescale_adv.py --env-id kuhn --defense two_timescale --eps-pi 1.0 --num-seeds 5
"""
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Literal, Optional

import numpy as np
import tyro

from envs import kuhn, quiet_warnings


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    num_seeds: int = 1
    """train seeds seed, seed+1, ..., seed+num_seeds-1 (each its own run folder)"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "robust-rl"
    """the wandb's project name"""
    wandb_entity: Optional[str] = None
    """the entity (team) of wandb's project"""
    save_policy: Optional[str] = None
    """also write the victim's last-iterate policy to this JSON file ({"policy": {infostate: P(bet or call)}}; one seed)"""
    progress: Optional[bool] = None
    """accepted for the common interface; the Kuhn setting prints one summary line per seed"""

    # Algorithm specific arguments
    env_id: str = "kuhn"
    """the setting: kuhn (the MuJoCo settings are not part of this version)"""
    defense: Literal["none", "single", "two_timescale", "min_oracle"] = "two_timescale"
    """adversarial training: none, single timescale, two timescales (Algorithm 2) or a min oracle (Algorithm 1)"""
    eps_pi: float = 1.0
    """the attacker's share of control: alpha plays (1 - eps_pi) * benign + eps_pi * adversarial"""
    attacker_lr: float = 0.1
    """the attacker's learning rate (two_timescale); the victim's is attacker_lr / timescale_ratio"""
    timescale_ratio: float = 10.0
    """attacker lr / victim lr (Algorithm 2 needs it >> 1)"""
    oracle_iters: int = 1
    """attacker gradient steps per victim step (single, two_timescale; min_oracle's attacker is exact)"""
    iterations: int = 2000
    """victim updates"""
    victim_player: int = 2
    """Kuhn: the victim's seat (1 or 2); alpha is the other player"""
    benign_policy: Optional[str] = None
    """Kuhn: alpha's benign policy as a JSON file ({"policy": {infostate: P(b)}}); default uniform (1/2 everywhere)"""
    gradient: Literal["exact", "sampled"] = "exact"
    """Kuhn: exact gradients on the game tree, or REINFORCE from --batch-size sampled episodes with the per-step coin"""
    batch_size: int = 16
    """Kuhn, --gradient sampled: episodes per update (the paper's batch size, App. E.3)"""
    parametrization: Literal["direct", "softmax"] = "direct"
    """Kuhn: policies as P(b) per infostate, steps projected onto [0, 1] (Algorithms 1-2), or as logits (softmax)"""
    log_every: int = 10
    """measure (exact worst case and gap of the last and the average iterate) every this many iterations"""


UMASK = os.umask(0o022)
os.umask(UMASK)


def fail(msg):
    """Bad input ends with one line on stderr and exit status 2, never a traceback."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def resolve_args(args):
    if args.env_id != "kuhn":
        fail(f"--env-id {args.env_id!r}: this version has the kuhn setting only (the MuJoCo PR-MDP and sumo settings are not implemented yet)")
    if not 0 <= args.eps_pi <= 1:
        fail(f"--eps-pi must be in [0, 1], got {args.eps_pi}")
    if not args.attacker_lr > 0 or not args.timescale_ratio > 0 or not math.isfinite(args.attacker_lr * args.timescale_ratio):
        fail("--attacker-lr and --timescale-ratio must be positive and finite")
    for name in ("num_seeds", "oracle_iters", "iterations", "batch_size", "log_every"):
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


if __name__ == "__main__":
    quiet_warnings()
    args = resolve_args(tyro.cli(Args))
    victim, alpha = args.victim_player, 3 - args.victim_player
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

            wandb_run = wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=run_args,
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
                        _, g_attacker = sampled_grads(victim, as_probs(victim_params), as_probs(new_attacker), benign, args.eps_pi, args.batch_size, rng)
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
                g_victim, _ = sampled_grads(victim, as_probs(victim_params), as_probs(opponent), benign, eps_train, args.batch_size, rng)
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
