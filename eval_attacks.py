"""Evaluate saved actors: natural return, return under each observation attack, the worst, and worst-case
robustness (worst - natural) / natural, as in Table 2 of the BARPO paper (arXiv 2512.01228); the protocol is
docs/protocol.md.

    python eval_attacks.py --model zoo/ppo_continuous__HalfCheetah-v4.safetensors --attacks fast
    python eval_attacks.py --model a.safetensors b.safetensors --attacks all --json out.json --markdown out.md
    python eval_attacks.py --model a.safetensors --attacks fast --epsilons 0 0.05 0.1 0.15 0.2 --plot curve.png
    python eval_attacks.py --model zoo/ppo_continuous__HalfCheetah-v4.safetensors --env-id HalfCheetah-v5

Deterministic actions, frozen normalizer, fixed seeds (episode k starts from reset(seed=seed + k)); episodes run
vectorized across --num-envs environments and every attack is batched over them. Learned attacks (rs, sa_rl, pa_ad
and the reference sa_rl_ref, pa_ad_ref) are trained once per checkpoint, eps, budget and --attack-seed and cached in
<checkpoint>.attacks/. `--attacks ref` runs sa_rl_ref and pa_ad_ref, opt-in reproductions of the published SA-RL
(ATLA) and PA-AD evaluation protocols, to compare with published tables (docs/protocol.md); `all` is the six.
`--attacks action_mix --eps-pi P` is an action attack: an adversarial policy whose action is executed on a share P of
the steps (the partial-control attack of arXiv 2305.17342).

Sumo arena checkpoints (two_timescale_adv.py --env-id sumo-puck|sumo-ant; docs/sumo.md) take `--attacks action_mix`
alone: the victim plays agent 0, agent 1 plays the checkpoint's benign policy (its benign/ tensors; a file without
them, e.g. phase 1's benign.safetensors, plays itself), and a fresh adversary, trained against the frozen victim and
cached like the other learned attacks, takes over agent 1 with probability --eps-pi per step. The table and the JSON
report the victim's win / loss / draw rates over --episodes games (default 200), the natural row being the victim
against the benign policy, and the stealthiness of the attack: the squared Wasserstein-2 distance between the
victim's observations with and without it on the most important features (attacks/stealth.py).

    python eval_attacks.py --model runs/sumo-puck__two_timescale_adv__1__*/two_timescale_adv.safetensors --attacks action_mix --eps-pi 0.3 --gif game.gif
"""
import datetime
import glob
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Optional

import gymnasium as gym
import numpy as np
import torch

FAST = ["random", "critic", "mad", "rs"]
ALL = ["random", "critic", "mad", "rs", "sa_rl", "pa_ad"]
REF = ["sa_rl_ref", "pa_ad_ref"]  # the published protocols, opt-in: not stronger attacks, so not in `all`
ACTION = ["action_mix"]  # an adversarial policy taking over the actuators with probability --eps-pi: opt-in
LEARNED = {"rs", "sa_rl", "pa_ad", "sa_rl_ref", "pa_ad_ref", "action_mix"}
SCHEMA = "robust-rl/eval/1"


@dataclass
class Args:
    model: tuple[str, ...]
    """checkpoint(s) to evaluate (.safetensors written by any robust-rl script)"""
    attacks: tuple[str, ...] = ("fast",)
    """attacks to run: names among random critic mad rs sa_rl pa_ad sa_rl_ref pa_ad_ref action_mix, or `fast` (random critic
    mad rs), `all` (the six), `ref` (sa_rl_ref pa_ad_ref: the published evaluation protocols); action_mix: --eps-pi"""
    epsilon: Optional[float] = None
    """l_inf budget in normalized-observation units (default: the env's, e.g. HalfCheetah 0.15, Hopper 0.075)"""
    epsilons: Optional[tuple[float, ...]] = None
    """eps sweep: evaluate every attack at each of these budgets and write a return-vs-eps curve"""
    episodes: Optional[int] = None
    """episodes per (model, attack) (default 50; sumo checkpoints 200 games)"""
    num_envs: Optional[int] = None
    """environments stepped together (default: all episodes at once); 1 = the one-env protocol"""
    seed: int = 0
    """evaluation seed: episode k starts from env.reset(seed=seed + k) (learned attacks use --attack-seed)"""
    attack_seed: int = 0
    """seed of the learned attacks' training (rs, sa_rl, pa_ad, sa_rl_ref, pa_ad_ref, action_mix) and part of their cache key"""
    batch_fits: bool = True
    """fit the learned attacks of the checkpoints side by side in one process (faster: benchmark/fit_speed.py; rs: one rollout collection per victim, its Q functions stacked); --no-batch-fits: one after another"""
    env_id: Optional[str] = None
    """evaluate on this env instead of the checkpoint's: the same robot, e.g. HalfCheetah-v5 for a -v4 checkpoint"""
    attack_steps: int = 10
    """gradient steps of the critic, MAD, RS and PA-AD attacks (step size eps / attack_steps)"""
    rs_steps: int = 200_000
    """environment steps to learn each robust-Sarsa Q function (cached next to the victim)"""
    sa_rl_steps: int = 1_000_000
    """environment steps to train the SA-RL adversary (the paper's budget; cached next to the victim)"""
    pa_ad_steps: int = 1_000_000
    """environment steps to train the PA-AD director (the paper's budget; cached next to the victim)"""
    sa_rl_ref_steps: Optional[int] = None
    """env steps to train sa_rl_ref (default: ATLA's budget for the env, 488 x 2048 = 999424; Ant 2441 x 2048)"""
    pa_ad_ref_steps: Optional[int] = None
    """env steps to train pa_ad_ref (default: PA-AD's budget for the env, 976 x 2048 = 1998848; Ant 4882 x 2048)"""
    eps_pi: float = 0.3
    """action_mix: the probability that the adversary's action is executed at a step (the attacker's share of control)"""
    action_mix_steps: int = 1_000_000
    """env steps to train the action_mix adversary (cached next to the victim)"""
    json: Optional[str] = None
    """write the results (schema robust-rl/eval/1) to this JSON file"""
    markdown: Optional[str] = None
    """write the table as Markdown to this file"""
    plot: Optional[str] = None
    """with --epsilons: write the return-vs-eps plot to this PNG file"""
    track: bool = False
    """log eval/* metrics to Weights and Biases"""
    wandb_project_name: str = "robust-rl"
    """the wandb's project name"""
    wandb_entity: Optional[str] = None
    """the entity (team) of wandb's project"""
    torch_threads: int = 1
    """torch intra-op threads"""
    progress: Optional[bool] = None
    """progress bars (default: on a terminal); without them, learned attacks' training prints a line every ~10%"""
    stealth_features: int = 10
    """sumo: the stealth measure (W2^2) sums over this many most important observation features (variance-based, App. E.2)"""
    gif: Optional[str] = None
    """sumo, one --model: write a GIF of one natural (left) and one attacked (right) game from --seed, side by side (offscreen GL: MUJOCO_GL=egl)"""


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def first_line(e):
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def evaluate(policy, env_id, episodes=50, seed=0, num_envs=None, attack=None, on_episode=None):
    """Per-episode raw returns of the deterministic policy (frozen normalizer), episodes run vectorized.

    Episode k always starts from env.reset(seed=seed + k) and, if the attack draws noise, from its own
    torch.Generator seeded with seed + k: the returns do not depend on num_envs (batched == one by one).
    `attack(x, gens)` maps normalized observations [B, obs_dim] to perturbed ones (no re-clip); an action attack
    (`attack.kind == "action"`, e.g. action_mix) instead maps the victim's actions: `attack.act(x, actions, gens)`.
    """
    num_envs = min(episodes, num_envs or episodes)
    envs = [gym.make(env_id) for _ in range(num_envs)]
    obs_dim = envs[0].observation_space.shape[0]
    low, high = envs[0].action_space.low, envs[0].action_space.high
    returns = np.zeros(episodes)
    slot_episode = [-1] * num_envs
    gens = [torch.Generator() for _ in range(num_envs)]
    obs = np.zeros((num_envs, obs_dim))
    next_episode = 0

    def start(i):
        nonlocal next_episode
        if next_episode >= episodes:
            slot_episode[i] = -1
            return
        k, next_episode = next_episode, next_episode + 1
        slot_episode[i] = k
        gens[i].manual_seed(seed + k)
        obs[i] = envs[i].reset(seed=seed + k)[0]

    for i in range(num_envs):
        start(i)
    while True:
        active = [i for i in range(num_envs) if slot_episode[i] >= 0]
        if not active:
            break
        x = torch.from_numpy(policy.obs_norm.normalize_np(obs[active]))
        action_attack = getattr(attack, "kind", "observation") == "action"
        if attack is not None and not action_attack:
            x = attack(x, [gens[i] for i in active])
        with torch.no_grad():
            act = policy.actor(x).numpy()
        if action_attack:
            act = attack.act(x, act, [gens[i] for i in active])
        act = np.clip(act, low, high)
        for j, i in enumerate(active):
            o, r, terminated, truncated, _ = envs[i].step(act[j])
            returns[slot_episode[i]] += r
            obs[i] = o
            if terminated or truncated:
                if on_episode is not None:
                    on_episode()
                start(i)
    for env in envs:
        env.close()
    return returns


SUMO_ENV_IDS = ("sumo-puck", "sumo-ant")
OUTCOME_SCORE = {"win": 1, "draw": 0, "loss": -1}  # the victim's (agent 0's) result of a game


def evaluate_arena(victim, benign, env_id, episodes=200, seed=0, num_envs=None, attack=None, on_episode=None, observations=None):
    """Per-game results of the victim (agent 0) in the sumo arena: +1 win, 0 draw, -1 loss; agent 1 plays `benign`,
    or the action attack's mix (`attack.act(x1, benign_actions, gens)`, x1 agent 1's observation through the benign
    normalizer). Deterministic actions and frozen normalizers; game k starts from reset_array(seed + k) and draws its
    coins from a generator seeded with seed + k, so the results do not depend on num_envs (batched == one by one).
    observations: a list that receives each game's raw observations of the victim [steps, obs_dim], in game order."""
    from envs.sumo import parallel_env

    num_envs = min(episodes, num_envs or episodes)
    envs = [parallel_env(env_id.split("-", 1)[1]) for _ in range(num_envs)]
    obs_dim = envs[0].obs_dim
    scores = np.zeros(episodes, dtype=np.int64)
    seen = {}  # game -> its victim observations
    slot_episode = [-1] * num_envs
    gens = [torch.Generator() for _ in range(num_envs)]
    obs = np.zeros((num_envs, 2, obs_dim))
    next_episode = 0

    def start(i):
        nonlocal next_episode
        if next_episode >= episodes:
            slot_episode[i] = -1
            return
        k, next_episode = next_episode, next_episode + 1
        slot_episode[i] = k
        gens[i].manual_seed(seed + k)
        obs[i] = envs[i].reset_array(seed + k)
        seen[k] = []

    for i in range(num_envs):
        start(i)
    while True:
        active = [i for i in range(num_envs) if slot_episode[i] >= 0]
        if not active:
            break
        x0 = torch.from_numpy(victim.obs_norm.normalize_np(obs[active, 0]))
        x1 = torch.from_numpy(benign.obs_norm.normalize_np(obs[active, 1]))
        with torch.no_grad():
            a0, a1 = victim.actor(x0).numpy(), benign.actor(x1).numpy()
        if attack is not None:
            a1 = attack.act(x1, a1, [gens[i] for i in active])
        a0, a1 = np.clip(a0, -1.0, 1.0), np.clip(a1, -1.0, 1.0)
        for j, i in enumerate(active):
            if observations is not None:
                seen[slot_episode[i]].append(obs[i, 0].copy())
            o, _, done = envs[i].step_array(np.stack([a0[j], a1[j]]))
            obs[i] = o
            if done:
                scores[slot_episode[i]] = OUTCOME_SCORE[envs[i].outcomes[0]]
                if on_episode is not None:
                    on_episode()
                start(i)
    for env in envs:
        env.close()
    if observations is not None:
        observations.extend(np.array(seen[k]) for k in range(episodes))
    return scores


def make_attack(name, policy, epsilon, args):
    """[(label, attack)] for `name`: one entry, or for robust Sarsa one per RS_GRID entry (labelled by its settings,
    e.g. rs[reg=0.1]); learned attacks are not fitted yet (see learned_attack)."""
    from attacks.critic import CriticAttack
    from attacks.mad import MADAttack
    from attacks.random import RandomAttack

    if name == "random":
        return [(name, RandomAttack(policy, epsilon))]
    if name == "critic":
        return [(name, CriticAttack(policy, epsilon, steps=args.attack_steps))]
    if name == "mad":
        return [(name, MADAttack(policy, epsilon, steps=args.attack_steps))]
    from attacks.pa_ad import PAADAttack
    from attacks.rs import RS_GRID, RobustSarsaAttack
    from attacks.sa_rl import SARLAttack

    if name == "rs":  # a small grid of Q functions; the caller reports the strongest
        grid = [RobustSarsaAttack(policy, epsilon, attack_steps=args.attack_steps, **s) for s in RS_GRID]
        return [(a.label, a) for a in grid]
    if name == "sa_rl":
        return [(name, SARLAttack(policy, epsilon))]
    if name == "pa_ad":
        return [(name, PAADAttack(policy, epsilon, pgd_steps=args.attack_steps))]
    from attacks.pa_ad_ref import PAADRefAttack
    from attacks.sa_rl_ref import SARLRefAttack

    if name == "sa_rl_ref":  # the official protocols: --attack-steps does not apply (pa_ad_ref takes one step)
        return [(name, SARLRefAttack(policy, epsilon))]
    if name == "action_mix":  # its budget is --eps-pi, not the observation eps
        from attacks.action_mix import ActionMixAttack

        return [(name, ActionMixAttack(policy, args.eps_pi))]
    return [(name, PAADRefAttack(policy, epsilon))]


def fit_steps(name, args, env_id):
    """A learned attack's training budget on env_id: its flag, or for a _ref attack without one the official budget."""
    from attacks import pa_ad_ref, sa_rl_ref

    if name == "sa_rl_ref":
        return args.sa_rl_ref_steps if args.sa_rl_ref_steps is not None else sa_rl_ref.official_steps(env_id)
    if name == "pa_ad_ref":
        return args.pa_ad_ref_steps if args.pa_ad_ref_steps is not None else pa_ad_ref.official_steps(env_id)
    return {"rs": args.rs_steps, "sa_rl": args.sa_rl_steps, "pa_ad": args.pa_ad_steps, "action_mix": args.action_mix_steps}[name]


def attack_cache(model, name, attack, args):
    """Where a learned attack's fit is cached: keyed by the victim, the attack's settings, the fit's steps and
    --attack-seed. The seed keeps the key name "seed" and its plain-int value: caches made before --attack-seed
    existed hold the evaluation seed 0 there (which then also seeded the fits), so --attack-seed 0 finds them. The
    env joins the key only when it is not the checkpoint's own (-v5 for a -v4 checkpoint): a fit on another env
    learns something else, and leaving it out otherwise keeps the existing caches' keys."""
    from attacks.ppo_adversary import cache_path

    key = {**attack.settings, "steps": fit_steps(name, args, model.env_id), "seed": args.attack_seed}
    if model.env_id != model.meta["env_id"]:
        key["env_id"] = model.env_id
    return cache_path(model.path, model.victim_hash, name, key)


def learned_attack(model, name, epsilon, args):
    """make_attack, with every learned attack loaded from its cache or fitted (on the evaluated env) and cached."""
    from attacks.ppo_adversary import fit_or_load

    candidates = make_attack(name, model.policy, epsilon, args)
    if name in LEARNED:
        for i, (label, attack) in enumerate(candidates):
            cache = attack_cache(model, name, attack, args)
            if cache in FITTED:  # fitted a moment ago by fit_side_by_side (which said so)
                candidates[i] = (label, FITTED.pop(cache))
                continue
            steps, progress = fit_steps(name, args, model.env_id), show_progress(args)
            loaded = fit_or_load(attack, cache, model.env_id, steps, args.attack_seed, progress)
            print(f"{label}: {'loaded' if loaded else 'trained and cached'} {cache}", file=sys.stderr, flush=True)
    return candidates


SIDE_BY_SIDE = ("rs", "sa_rl", "pa_ad", "sa_rl_ref", "pa_ad_ref", "action_mix")  # every learned attack
FITTED = {}  # cache path -> the attack fit_side_by_side fitted and cached, for learned_attack to use as it is


def fit_side_by_side(models, names, args):
    """Fit and cache, side by side in one process, every learned attack that the checkpoints of one env still need
    (attacks.ppo_adversary.fit_many for the PPO-learned ones; attacks.rs.fit_many for robust Sarsa: one rollout
    collection per victim, the Q functions of RS_GRID of every victim stacked); the evaluation then loads them as any
    cached fit. A PPO-learned fit's bits depend on its victim, settings and seed only, not on the other fits beside it
    (or whether there are any). Each is the algorithm, seed and budget of the attack's own fit() (--no-batch-fits) and
    ends where that one does to float32 rounding after its first updates; later the rounding grows as any last bit
    does in MuJoCo: another sample of the same fit."""
    from attacks import rs
    from attacks.ppo_adversary import fit_many

    for name in (n for n in names if n in SIDE_BY_SIDE):
        for env_id in sorted({m.env_id for m in models}):
            todo = {}  # cache path -> attack: one fit per victim and budget
            for model in (m for m in models if m.env_id == env_id):
                for epsilon in model.epsilons:
                    for _, attack in arena_attack(model, args) if model.benign is not None else make_attack(name, model.policy, epsilon, args):
                        cache = attack_cache(model, name, attack, args)
                        if not os.path.exists(cache):
                            todo.setdefault(cache, attack)
            if not todo:
                continue
            what = f"{len(todo)} Q function{'' if len(todo) == 1 else 's'}" if name == "rs" else f"{len(todo)} adversar{'y' if len(todo) == 1 else 'ies'}"
            print(f"{name}: fitting {what} in one process on {env_id}", file=sys.stderr, flush=True)
            (rs.fit_many if name == "rs" else fit_many)(list(todo.values()), env_id, fit_steps(name, args, env_id), args.attack_seed, show_progress(args))
            for cache, attack in todo.items():
                os.makedirs(os.path.dirname(cache), exist_ok=True)
                attack.save(cache)
                FITTED[cache] = attack
                print(f"{attack.label if name == 'rs' else name}: trained and cached {cache}", file=sys.stderr, flush=True)


# Fit speed of each learned attack in its --*-steps per second of wall-clock (robust Sarsa: per Q function, data
# collection and 30 TD epochs together, averaged over RS_GRID), only for the up-front "will train" estimate: rough,
# it varies ~1.5x between envs and more with the machine's load. Measured 2026-11-22 on a 2-core AMD EPYC VM, one
# process (with one other process busy on the machine), torch 1 thread, zoo PPO agents Hopper-v4 / HalfCheetah-v4:
# rs 1770 / 2180 (3 x 20k steps), sa_rl 2180 / 3390, pa_ad 1570 / 2510 (16k steps each); the slower env's, rounded.
# Cross-check the same day: a full 1M-step sa_rl fit on Hopper-v4 took 6.8 min (2450 steps/s; estimated ~8 min).
# The reference attacks, later that day under heavier load (load average 3.8), 8k steps each: sa_rl_ref
# 2380 / 2670, pa_ad_ref 2220 / 2280 (sa_rl 2900 on HalfCheetah-v4 in the same run); sa_rl_ref and action_mix (the same
# PPO learner, not timed on its own) take sa_rl's rate.
FIT_STEPS_PER_SECOND = {"rs": 1800, "sa_rl": 2200, "pa_ad": 1600, "sa_rl_ref": 2200, "pa_ad_ref": 2000, "action_mix": 2200}
# The arena's action_mix adversaries, 3 fits side by side as eval_attacks fits them, beside one training process
# (2026-11-24, benchmark/logs/sumo-*__vs*.log): sumo-puck 2230 steps/s, sumo-ant 780 on the 2-core AMD EPYC VM;
# 5190 and 2100 on a 2-core Intel Xeon VM. An ant step costs 2.5-2.9x a puck step on both; the slower machine's rates.
ARENA_FIT_STEPS_PER_SECOND = {"sumo-puck": 2200, "sumo-ant": 800}
# Robust Sarsa side by side (attacks.rs.fit_many, the default): 2.5x the rate of one Q at a time (benchmark/fit_speed.py
# --attack rs, RESULTS "Speed: learned attacks fitted side by side"; 3.1x in a shorter check of 50k steps x 2 epochs).
RS_SIDE_BY_SIDE_SPEEDUP = 2.5


def count(n):
    """200k, 1M, 1.5M, 256: step budgets as a person says them."""
    for div, suffix in ((1_000_000, "M"), (1000, "k")):
        if n >= div and n % (div // 10) == 0:
            return f"{n / div:g}{suffix}"
    return str(n)


def announce_fits(models, names, args):
    """One stderr line before anything runs: which requested learned attacks will train (how much, roughly how long)
    and which are cached, e.g. `will train: rs (3 Q functions x 200k steps, ~6 min); cached: sa_rl`. A cache folder
    that a fit could not be saved to is an error now, not after the evaluations before it."""
    from attacks.ppo_adversary import format_duration

    learned = [n for n in names if n in LEARNED]
    if not learned:
        return
    todo, done = {n: 0 for n in learned}, {n: 0 for n in learned}
    budgets = {n: [] for n in learned}  # steps of each fit to come: the _ref attacks' defaults depend on the env
    seconds = {n: 0.0 for n in learned}
    for model in models:
        for epsilon in model.epsilons:
            for name in learned:
                for _, attack in arena_attack(model, args) if model.benign is not None else make_attack(name, model.policy, epsilon, args):
                    cache = attack_cache(model, name, attack, args)
                    if os.path.exists(cache):
                        done[name] += 1
                        continue
                    todo[name] += 1
                    budgets[name].append(fit_steps(name, args, model.env_id))
                    rate = ARENA_FIT_STEPS_PER_SECOND[model.env_id] if model.benign is not None else FIT_STEPS_PER_SECOND[name]
                    seconds[name] += budgets[name][-1] / rate
                    folder = os.path.dirname(os.path.abspath(cache))
                    if not os.access(folder if os.path.isdir(folder) else os.path.dirname(folder), os.W_OK):
                        fail(f"{folder}: cannot write the attack cache here ({name} would train and not be saved)")
    parts, total = [], 0.0
    for name in (n for n in learned if todo[n]):
        took = seconds[name] / (RS_SIDE_BY_SIDE_SPEEDUP if name == "rs" and args.batch_fits else 1)
        total += took
        if name == "rs":
            fits = f"{todo[name]} Q function{'s' if todo[name] > 1 else ''} x "
        else:
            fits = f"{todo[name]} x " if todo[name] > 1 else ""
        steps = "/".join(count(b) for b in sorted(set(budgets[name])))  # e.g. 999424/4999168: Hopper and Ant models
        parts.append(f"{name} ({fits}{steps} steps, ~{format_duration(max(took, 1))})")
    cached = [n if not todo[n] else f"{n} ({done[n]} of {done[n] + todo[n]})" for n in learned if done[n]]
    line = f"will train: {', '.join(parts) or 'none'}"
    if len(parts) > 1:
        line += f" (~{format_duration(total)} in all)"
    print(f"{line}; cached: {', '.join(cached) or 'none'}", file=sys.stderr, flush=True)


def show_progress(args):
    """How fits report: a tqdm "bar" on a terminal, plain "lines" otherwise; --progress True / False decides."""
    return "bar" if (sys.stderr.isatty() if args.progress is None else args.progress) else "lines"


def summary(returns):
    return dict(mean=float(np.mean(returns)), std=float(np.std(returns)), returns=[float(r) for r in returns])


@dataclass
class Model:
    """A checkpoint ready to evaluate: its policy, metadata, the env it is evaluated on and the budgets."""

    path: str
    policy: object
    meta: dict
    env_id: str
    victim_hash: str
    epsilons: list
    benign: object = None  # sumo checkpoints: agent 1's benign policy (then the model is an arena model)


def open_model(path, args):
    """Load and check a checkpoint against the env it will be evaluated on (--env-id or its own) and resolve its
    budgets, or end with a one-line error: every model is opened before anything runs."""
    from attacks.checkpoint import CheckpointError, default_epsilon, load_checkpoint, policy_hash

    if os.path.isdir(path):
        n = len(glob.glob(os.path.join(glob.escape(path), "*.safetensors")))
        held = f"holds {n} checkpoint{'s' if n != 1 else ''}" if n else "holds no .safetensors file"
        example = os.path.join(path, "*.safetensors")
        fail(f"{path} is a folder ({held}), not a checkpoint: pass files, e.g. --model {example}")
    try:
        policy, meta = load_checkpoint(path, env_id=args.env_id)  # another robot than --env-id's is refused here
    except CheckpointError as e:
        fail(str(e))
    if str(meta["env_id"]).startswith("sumo"):
        return open_arena_model(path, policy, meta, args)
    env_id = args.env_id or meta["env_id"]
    try:
        spec_env = gym.make(env_id)
    except Exception as e:
        if args.env_id:
            fail(f"--env-id {env_id!r}: gymnasium cannot make it ({first_line(e)})")
        fail(f"{path}: checkpoint env {env_id!r} is not a registered gymnasium environment")
    obs_dim, act_dim = spec_env.observation_space.shape[0], spec_env.action_space.shape[0]
    spec_env.close()
    if (obs_dim, act_dim) != (meta["obs_dim"], meta["act_dim"]):
        fail(f"{path}: checkpoint dims (obs {meta['obs_dim']}, act {meta['act_dim']}) do not match {env_id} (obs {obs_dim}, act {act_dim})")
    if args.epsilons:
        epsilons = list(args.epsilons)
    else:  # the budget is the evaluated env's (the same robot's as the checkpoint's, so the same number)
        epsilons = [args.epsilon if args.epsilon is not None else default_epsilon(env_id)]
    if None in epsilons:
        fail(f"no default attack budget for {env_id}: pass --epsilon")
    return Model(path, policy, meta, env_id, policy_hash(policy), epsilons)


def open_arena_model(path, policy, meta, args):
    """A sumo checkpoint: the victim (actor/, critic/, obs_norm/) and the benign policy of agent 1 (benign/, or the
    victim itself in a file without them: phase 1's self-play policy plays itself), checked against the arena."""
    from attacks.checkpoint import Policy, policy_hash, read_checkpoint
    from envs.sumo import parallel_env

    env_id = meta["env_id"]
    if env_id not in SUMO_ENV_IDS:
        fail(f"{path}: unknown sumo arena {env_id!r} (choose from {', '.join(SUMO_ENV_IDS)})")
    if args.env_id is not None and args.env_id != env_id:
        fail(f"{path}: a {env_id} checkpoint, not {args.env_id}")
    env = parallel_env(env_id.split("-", 1)[1])
    obs_dim, act_dim = env.obs_dim, env.n_actions
    env.close()
    if (obs_dim, act_dim) != (meta["obs_dim"], meta["act_dim"]):
        fail(f"{path}: checkpoint dims (obs {meta['obs_dim']}, act {meta['act_dim']}) do not match {env_id} (obs {obs_dim}, act {act_dim})")
    tensors, _ = read_checkpoint(path)
    if meta.get("complete") is False:  # an interrupted run's last save: evaluated as asked, but never silently
        print(f"note: {path} was saved before its training phase finished (step {meta.get('global_step')})", file=sys.stderr, flush=True)
    benign = policy
    if any(k.startswith("benign/") for k in tensors):
        try:  # benign/actor.layers.0.weight -> actor/layers.0.weight
            benign = Policy({k.split("/", 1)[1].replace(".", "/", 1): v for k, v in tensors.items() if k.startswith("benign/")}, meta)
        except KeyError as e:
            fail(f"{path}: the benign policy is incomplete (no {e.args[0]})")
        if (benign.actor.layers[0].in_features, benign.actor.layers[-1].out_features) != (obs_dim, act_dim):
            fail(f"{path}: the benign policy's dims do not match {env_id} (obs {obs_dim}, act {act_dim})")
    return Model(path, policy, meta, env_id, policy_hash(policy), [None], benign)


def arena_attack(model, args):
    """[(label, attack)]: the action_mix adversary of agent 1 against this arena checkpoint's victim, not fitted yet; it
    trains with the shaping schedule the victim trained with."""
    from attacks.action_mix import ArenaActionMixAttack

    anneal = model.meta.get("args", {}).get("shaping_anneal", 0.5)
    return [("action_mix", ArenaActionMixAttack(model.policy, model.benign, model.env_id, args.eps_pi, shaping_anneal=anneal))]


def arena_summary(scores):
    """The victim's win / loss / draw rates, and mean / std / per-game results (+1, 0, -1) in the places of returns."""
    return dict(win=float(np.mean(scores == 1)), loss=float(np.mean(scores == -1)), draw=float(np.mean(scores == 0)),
                mean=float(np.mean(scores)), std=float(np.std(scores)), returns=[int(v) for v in scores])


def run_arena_model(model, args):
    """Evaluate one sumo checkpoint: the victim against the benign policy (natural) and under action_mix at --eps-pi
    (a fresh adversary, cached): win / loss / draw rates, and the attack's stealthiness (attacks/stealth.py)."""
    from tqdm import tqdm

    from attacks.ppo_adversary import fit_or_load
    from attacks.stealth import stealth

    path, bar = model.path, show_progress(args) == "bar"
    result = dict(model=path, env_id=model.env_id, checkpoint_env_id=model.meta["env_id"], script=model.meta.get("script"),
                  global_step=model.meta.get("global_step"), arena=True, epsilon=None, eps_pi=args.eps_pi, episodes=args.episodes,
                  seed=args.seed, attack_seed=args.attack_seed, attacks={})
    head = f"{os.path.basename(path)} eps_pi {args.eps_pi:g}"

    def run(label, attack, observations):
        t0 = time.time()
        with tqdm(total=args.episodes, desc=f"{os.path.basename(path)} {label}", disable=not bar, leave=False) as pbar:
            scores = evaluate_arena(model.policy, model.benign, model.env_id, args.episodes, args.seed, args.num_envs, attack,
                                    on_episode=lambda: pbar.update(1), observations=observations)
        out = arena_summary(scores)
        out["seconds"] = round(time.time() - t0, 2)
        print(f"{head} {label}: win {out['win']:.3f} loss {out['loss']:.3f} draw {out['draw']:.3f} over {len(scores)} games "
              f"({out['seconds']:.0f} s)", file=sys.stderr, flush=True)
        return out

    from attacks.certificate import certificate

    result["certificate"] = certificate(model.policy, None)  # the victim's actor; no observation budget, so no bound
    natural_obs = []
    result["natural"] = run("natural", None, natural_obs)
    if "action_mix" in expand_attacks(args.attacks):
        ((label, attack),) = arena_attack(model, args)
        cache = attack_cache(model, "action_mix", attack, args)
        if cache in FITTED:  # fitted a moment ago by fit_side_by_side (which said so)
            attack = FITTED.pop(cache)
        else:
            try:
                loaded = fit_or_load(attack, cache, model.env_id, fit_steps("action_mix", args, model.env_id), args.attack_seed, show_progress(args))
            except (ValueError, OSError) as e:  # an unreadable or unwritable attack cache
                fail(f"{path}: action_mix: {first_line(e)}")
            print(f"{label}: {'loaded' if loaded else 'trained and cached'} {cache}", file=sys.stderr, flush=True)
        attacked_obs = []
        out = run(label, attack, attacked_obs)
        # the attacker wins when the victim loses; its share: the coins it won while attacking
        out.update(eps_pi=args.eps_pi, attacker_win_rate=out["loss"], attacker_share=attack.taken / max(attack.decisions, 1))
        result["attacks"][label] = out
        result["worst"] = dict(attack=label, mean=out["mean"])
        halves = (np.concatenate(natural_obs[0::2]), np.concatenate(natural_obs[1::2])) if len(natural_obs) > 1 else None
        # the clock (the last feature: time left) is left out: it shifts only through the games' lengths, i.e. through
        # the outcome itself, and a picture of the arena does not show it
        clock = [natural_obs[0].shape[1] - 1]
        result["stealth"] = stealth(np.concatenate(natural_obs), np.concatenate(attacked_obs), args.stealth_features, natural_halves=halves, exclude=clock)
        print(f"{head} stealth: W2^2 {result['stealth']['w2_squared']:.4g} on features {result['stealth']['features']}"
              + (f" (natural halves: {result['stealth']['floor']:.4g})" if halves else ""), file=sys.stderr, flush=True)
        if args.gif:
            write_gif(model, attack, args)
    elif args.gif:
        write_gif(model, None, args)
    return result


def write_gif(model, attack, args):
    """--gif: the game from reset_array(--seed) without the attack (left) and with it (right), every second step
    (10 frames per second: real time at 20 steps per second); the shorter game holds its last frame."""
    import imageio.v3 as iio
    from PIL import Image, ImageDraw

    from envs.sumo import parallel_env

    movies = []
    for label, mix in (("natural (red: victim)", None), (f"action_mix eps_pi {args.eps_pi:g}", attack)):
        if label.startswith("action_mix") and mix is None:
            continue
        env = parallel_env(model.env_id.split("-", 1)[1], render_mode="rgb_array", width=320, height=320)
        gen = torch.Generator().manual_seed(args.seed)  # the evaluation's coins of game 0
        obs, done, frames = env.reset_array(args.seed), False, []
        try:
            frames.append(env.render())
            while not done:
                x0 = torch.from_numpy(model.policy.obs_norm.normalize_np(obs[:1]))
                x1 = torch.from_numpy(model.benign.obs_norm.normalize_np(obs[1:]))
                with torch.no_grad():
                    a0, a1 = model.policy.actor(x0).numpy(), model.benign.actor(x1).numpy()
                if mix is not None:
                    a1 = mix.act(x1, a1, [gen])
                obs, _, done = env.step_array(np.clip(np.concatenate([a0, a1]), -1.0, 1.0))
                if env._t % 2 == 0 or done:
                    frames.append(env.render())
        except Exception as e:  # no offscreen GL context
            fail(f"--gif: offscreen rendering failed ({first_line(e)}); set MUJOCO_GL=egl or osmesa")
        finally:
            env.close()
        caption = f"{label}: victim {env.outcomes[0]}"
        for k, frame in enumerate(frames):
            image = Image.fromarray(frame)
            ImageDraw.Draw(image).text((6, 6), caption if k == len(frames) - 1 else label, fill=(255, 255, 255))
            frames[k] = np.asarray(image)
        movies.append(frames)
    n = max(len(m) for m in movies)
    frames = [np.concatenate([m[min(k, len(m) - 1)] for m in movies], axis=1) for k in range(n)]
    tmp = f"{args.gif}.tmp{os.getpid()}.gif"
    iio.imwrite(tmp, np.stack(frames), duration=100, loop=0)
    os.replace(tmp, args.gif)
    print(f"gif written to {args.gif} ({n} frames)", file=sys.stderr, flush=True)


def arena_table(results):
    """Markdown table of sumo results: the victim's win / loss / draw rates, the attacker's win rate, the shift."""
    head = ["model", "env", "eps_pi", "games", "natural win / loss / draw", "action_mix win / loss / draw", "attacker win rate", "W2^2 top-k (natural halves)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        nat, mix, st = r["natural"], r["attacks"].get("action_mix"), r.get("stealth")
        name = os.path.join(os.path.basename(os.path.dirname(os.path.abspath(r["model"]))), os.path.basename(r["model"]))  # run folder: seed
        cells = [name, r["env_id"], f"{r['eps_pi']:g}", str(r["episodes"]), f"{nat['win']:.3f} / {nat['loss']:.3f} / {nat['draw']:.3f}"]
        cells += [f"{mix['win']:.3f} / {mix['loss']:.3f} / {mix['draw']:.3f}" if mix else "", f"{mix['attacker_win_rate']:.3f}" if mix else ""]
        cells += [f"{st['w2_squared']:.4g}" + (f" ({st['floor']:.2g})" if "floor" in st else "") if st else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wandb_labels(meta):
    """The W&B group and tags its training script gave the checkpoint's run (`wandb_labels` in each script), from
    the flags the checkpoint records, so that a report shows a configuration's evaluations beside its training."""
    a, script = meta.get("args", {}), (meta.get("script") or "").removesuffix(".py")
    env, exp = meta.get("env_id"), a.get("exp_name", script)
    group, tags = f"{env}__{exp}", [exp, env]
    if script in ("sappo", "arppo", "barppo", "pruned_ppo"):
        group += f"__kappa{a.get('kappa')}"
        tags += [f"kappa={a.get('kappa')}", f"eps={a.get('epsilon')}"]
    if script in ("arppo", "barppo") and not a.get("guidance", True):
        group, tags = group + "__nog", tags + ["no-guidance"]
    if script == "pruned_ppo":
        group += f"__{a.get('prune_method')}{a.get('target_sparsity')}" + ("" if a.get("prune_interval", 10) == 10 else f"__interval{a.get('prune_interval')}")
        tags += [f"prune={a.get('prune_method')}", f"sparsity={a.get('target_sparsity')}", f"interval={a.get('prune_interval', 10)}"]
    if script == "two_timescale_adv":
        group += f"__{a.get('defense')}__eps_pi{a.get('eps_pi')}"
        tags += [f"defense={a.get('defense')}", f"eps_pi={a.get('eps_pi')}"]
    return a.get("wandb_group") or group, tags


def run_model(model, args, epsilon):
    """Evaluate one checkpoint: natural + every attack at one eps. Returns the result dict."""
    from tqdm import tqdm

    path, policy, env_id = model.path, model.policy, model.env_id
    names = expand_attacks(args.attacks)
    bar = show_progress(args) == "bar"
    result = dict(model=path, env_id=env_id, checkpoint_env_id=model.meta["env_id"], script=model.meta.get("script"),
                  global_step=model.meta.get("global_step"), epsilon=epsilon, episodes=args.episodes, seed=args.seed,
                  attack_seed=args.attack_seed, attacks={})
    head = f"{os.path.basename(path)} eps {epsilon:g}"

    def run(label, attack):
        t0 = time.time()
        with tqdm(total=args.episodes, desc=f"{os.path.basename(path)} {label}", disable=not bar, leave=False) as pbar:
            returns = evaluate(policy, env_id, args.episodes, args.seed, args.num_envs, attack, on_episode=lambda: pbar.update(1))
        out = summary(returns)
        out["seconds"] = round(time.time() - t0, 2)
        line = f"{head} {label}: {out['mean']:.1f} +- {out['std']:.1f} ({out['seconds']:.0f} s)"
        print(line, file=sys.stderr, flush=True)
        return out

    result["natural"] = run("natural", None)
    # the certified Lipschitz report of arXiv 2510.12939 for every actor; MAD measures how loose its bound is
    from attacks.certificate import MaxDeviation, certificate

    result["certificate"] = certificate(policy, epsilon)
    for name in names:
        try:
            candidates = learned_attack(model, name, epsilon, args)
        except (ValueError, OSError) as e:  # no critic in the checkpoint, an unreadable or unwritable attack cache
            fail(f"{path}: {name}: {first_line(e)}")
        if name == "mad":
            candidates = [(label, MaxDeviation(attack, policy)) for label, attack in candidates]
        runs = [run(label, attack) for label, attack in candidates]
        if name == "mad":
            result["certificate"]["empirical_max_deviation"] = max(attack.max for _, attack in candidates)
        best = min(range(len(runs)), key=lambda i: runs[i]["mean"])  # the strongest of a grid (robust Sarsa)
        result["attacks"][name] = runs[best]
        if name == "action_mix":  # an action attack: its budget is the share of control, not the observation eps
            result["attacks"][name]["eps_pi"] = args.eps_pi
        if len(runs) > 1:
            labels = [label for label, _ in candidates]
            means = [r["mean"] for r in runs]
            result["attacks"][name].update(strongest=labels[best], grid_labels=labels, grid_means=means)
            grid = ", ".join(f"{label} {r['mean']:.1f}" for label, r in zip(labels, runs))
            print(f"{head} {name}: the strongest is {labels[best]} (of {grid})", file=sys.stderr, flush=True)
    nat = result["natural"]["mean"]
    if result["attacks"]:
        worst = min(result["attacks"], key=lambda n: result["attacks"][n]["mean"])
        result["worst"] = dict(attack=worst, mean=result["attacks"][worst]["mean"])
        result["robustness"] = (result["worst"]["mean"] - nat) / abs(nat) if nat != 0 else None
    return result


def expand_attacks(names):
    out = []
    for n in names:
        for m in FAST if n == "fast" else ALL if n == "all" else REF if n == "ref" else [n]:
            if m not in ALL + REF + ACTION:
                fail(f"unknown attack {m!r} (choose from {' '.join(ALL + REF + ACTION)}, fast, all, ref)")
            if m not in out:
                out.append(m)
    return out


def certificate_line(r):
    """One line per result: the certificate's parts (docs/protocol.md)."""
    c = r["certificate"]
    found = f", MAD found {c['empirical_max_deviation']:.3g}" if c.get("empirical_max_deviation") is not None else ""
    bound = f"action deviation bound {c['action_deviation_bound']:.4g} at eps {r['epsilon']:g}" if c.get("action_deviation_bound") is not None else "no observation budget"
    return (f"{os.path.basename(r['model'])} certificate: Lipschitz surrogate {c['lipschitz_surrogate']:.4g} (spectral product "
            f"{c['spectral_product']:.4g}), {bound}{found}, sigma_min {c['sigma_min']:.3g}, sparsity {c['sparsity']:.3f}")


def table(results):
    """Markdown table in the layout of the BARPO paper's Table 2."""
    names = []
    for r in results:
        names += [n for n in r["attacks"] if n not in names]
    head = ["model", "env", "eps", "natural"] + names + ["worst", "robustness"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [os.path.basename(r["model"]), r["env_id"], f"{r['epsilon']:g}", f"{r['natural']['mean']:.0f} ± {r['natural']['std']:.0f}"]
        cells += [f"{r['attacks'][n]['mean']:.0f} ± {r['attacks'][n]['std']:.0f}" if n in r["attacks"] else "" for n in names]
        cells += [f"{r['worst']['mean']:.0f} ({r['worst']['attack']})" if "worst" in r else "", f"{r['robustness']:.2f}" if r.get("robustness") is not None else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_model():
    """The processor's name (/proc/cpuinfo's "model name"; else the platform's): a host name alone does not say which
    CPU a number came from, and MuJoCo's chaotic games (ant-sumo) come out differently on another instruction set."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def provenance():
    """Command, commit, date and machine of this evaluation, taken when it starts (the code it runs is the code it
    started with: a long evaluation must not record a commit made while it ran); "-dirty" if tracked .py files differ."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10).stdout.strip() or None
        if commit and subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "*.py"], cwd=here, capture_output=True, timeout=10).returncode != 0:
            commit += "-dirty"
    except Exception:
        commit = None
    import mujoco

    return dict(command=" ".join(sys.argv), git_commit=commit, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                machine=f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu, {cpu_model()}", versions=dict(torch=torch.__version__, gymnasium=gym.__version__, mujoco=mujoco.__version__))


def write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def plot_sweep(sweep, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sweep), figsize=(5 * len(sweep), 4), squeeze=False)
    for ax, (model, points) in zip(axes[0], sweep.items()):
        eps = [p["epsilon"] for p in points]
        ax.plot(eps, [p["natural"]["mean"] for p in points], "k--", label="natural")
        for name in points[0]["attacks"]:
            ax.plot(eps, [p["attacks"][name]["mean"] for p in points], "o-", label=name)
        ax.set_title(f"{os.path.basename(model)}\n{points[0]['env_id']}", fontsize=9)
        ax.set_xlabel("eps (l_inf, normalized obs)")
        ax.set_ylabel("return")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(args):
    started = provenance()
    if (args.episodes is not None and args.episodes <= 0) or (args.num_envs is not None and args.num_envs <= 0) or args.attack_steps <= 0:
        fail("--episodes, --num-envs and --attack-steps must be positive")
    if args.stealth_features <= 0:
        fail(f"--stealth-features must be positive, got {args.stealth_features}")
    if args.gif and len(args.model) > 1:
        fail(f"--gif draws one checkpoint's game: give one --model, not {len(args.model)}")
    if args.gif:
        os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering, if mujoco is not imported yet (from Python)
    ref_steps = [n for n in (args.sa_rl_ref_steps, args.pa_ad_ref_steps) if n is not None]
    if min(args.rs_steps, args.sa_rl_steps, args.pa_ad_steps, args.action_mix_steps, *ref_steps) <= 0:
        fail("--rs-steps, --sa-rl-steps, --pa-ad-steps, --action-mix-steps, --sa-rl-ref-steps and --pa-ad-ref-steps must be positive")
    if not 0 <= args.eps_pi <= 1:
        fail(f"--eps-pi must be in [0, 1], got {args.eps_pi}")
    for e in ([args.epsilon] if args.epsilon is not None else []) + list(args.epsilons or []):
        if not 0 <= e < math.inf:
            fail(f"attack budget must be finite and >= 0, got {e}")
    if args.plot and not args.epsilons:
        fail("--plot needs --epsilons")
    if args.torch_threads <= 0:
        fail(f"--torch-threads must be positive, got {args.torch_threads}")
    names = expand_attacks(args.attacks)
    if args.env_id is not None and args.env_id.startswith("sumo"):
        if args.env_id not in SUMO_ENV_IDS:
            fail(f"--env-id {args.env_id!r}: unknown sumo arena (choose from {', '.join(SUMO_ENV_IDS)})")
    elif args.env_id is not None:
        try:
            gym.spec(args.env_id)
        except gym.error.Error as e:
            fail(f"--env-id {args.env_id!r} is not a registered gymnasium environment ({first_line(e)})")
    # fail now, not after an hour of evaluation: every model readable and fit for its env, every output folder writable
    for out_path in (args.json, args.markdown, args.plot, args.gif):
        if out_path and not os.access(os.path.dirname(os.path.abspath(out_path)), os.W_OK):
            fail(f"{out_path}: its folder does not exist or is not writable")
    models = [open_model(path, args) for path in args.model]
    arena = any(m.benign is not None for m in models)
    if arena:  # sumo checkpoints: agent 1's adversarial policy is the only attack, and their table is another
        if not all(m.benign is not None for m in models):
            fail("sumo checkpoints and gymnasium ones are evaluated apart (other attacks, another table): one kind per call")
        if set(names) - {"action_mix"}:
            fail(f"sumo checkpoints take --attacks action_mix only (not {' '.join(n for n in names if n != 'action_mix')}): the observation attacks need a gymnasium env")
        if args.epsilons:
            fail("--epsilons sweeps observation budgets; a sumo checkpoint's budget is --eps-pi")
    elif args.gif:
        fail("--gif draws sumo games: it needs a sumo checkpoint")
    if args.episodes is None:
        args.episodes = 200 if arena else 50  # the sumo rates need enough games: 200 gives a standard error <= 0.035
    elif arena and args.episodes < 200:
        print(f"note: {args.episodes} games per row; the protocol's sumo rates take 200 (a standard error <= 0.035)", file=sys.stderr, flush=True)
    torch.set_num_threads(args.torch_threads)
    announce_fits(models, names, args)
    if args.batch_fits:
        fit_side_by_side(models, names, args)
    out = dict(schema=SCHEMA, **started)
    if args.epsilons:
        sweep = {m.path: [run_model(m, args, e) for e in m.epsilons] for m in models}
        for path, points in sweep.items():
            print(f"\n{path}")
            print(table(points))
            for r in points:
                print(certificate_line(r))
        out["sweep"] = sweep
        if args.plot:
            plot_sweep(sweep, args.plot)
            print(f"plot written to {args.plot}")
        results = [p for points in sweep.values() for p in points]
    elif arena:
        results = [run_arena_model(m, args) for m in models]
        print(arena_table(results))
        for r in results:
            print(certificate_line(r))
        out["results"] = results
    else:
        results = [run_model(m, args, m.epsilons[0]) for m in models]
        print(table(results))
        for r in results:
            print(certificate_line(r))
        out["results"] = results
    if args.json:
        write_atomic(args.json, json.dumps(out, indent=1))
    if args.markdown:
        write_atomic(args.markdown, (arena_table(results) if arena else table(results)) + "\n\n" + "".join(f"- {certificate_line(r)}\n" for r in results))
    if args.track:
        import wandb

        metas = {m.path: m.meta for m in models}
        for r in results:  # one run per checkpoint (and eps), in its training run's group
            group, tags = wandb_labels(metas[r["model"]])
            if r.get("arena"):  # sumo: rates, not returns
                run = wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=vars(args), job_type="eval", group=group,
                                 tags=tags + ["eval"], name=f"eval__{os.path.basename(r['model']).removesuffix('.safetensors')}__eps_pi{r['eps_pi']:g}",
                                 reinit="create_new")
                metrics = {"eval/natural_win_rate": r["natural"]["win"], "eval/natural_draw_rate": r["natural"]["draw"], "eval/eps_pi": r["eps_pi"]}
                if "action_mix" in r["attacks"]:
                    metrics.update({"eval/action_mix_win_rate": r["attacks"]["action_mix"]["win"], "eval/attacker_win_rate": r["attacks"]["action_mix"]["attacker_win_rate"],
                                    "eval/w2_squared": r["stealth"]["w2_squared"]})
                run.log(metrics)
                run.finish()
                continue
            run = wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=vars(args), job_type="eval",
                             group=group, tags=tags + ["eval"], name=f"eval__{os.path.basename(r['model']).removesuffix('.safetensors')}__eps{r['epsilon']:g}",
                             reinit="create_new")
            metrics = {"eval/natural_return": r["natural"]["mean"], **{f"eval/{n}_return": a["mean"] for n, a in r["attacks"].items()},
                       "eval/epsilon": r["epsilon"]}
            if "worst" in r:
                metrics.update({"eval/worst_return": r["worst"]["mean"], "eval/robustness": r["robustness"]})
            run.log(metrics)
            run.finish()
    return out


if __name__ == "__main__":
    import tyro

    if any(a == "--gif" or a.startswith("--gif=") for a in sys.argv[1:]):
        os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering: mujoco reads it when first imported (next line)
    from envs import quiet_warnings

    quiet_warnings()
    main(tyro.cli(Args))
