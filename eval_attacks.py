"""Evaluate saved actors: natural return, return under each observation attack, the worst, and worst-case
robustness (worst - natural) / natural, as in Table 2 of the BARPO paper (arXiv 2512.01228; DESIGN.md section 4).

    python eval_attacks.py --model zoo/ppo_continuous__HalfCheetah-v4.safetensors --attacks fast
    python eval_attacks.py --model a.safetensors b.safetensors --attacks all --json out.json --markdown out.md
    python eval_attacks.py --model a.safetensors --attacks fast --epsilons 0 0.05 0.1 0.15 0.2 --plot curve.png

Deterministic actions, frozen normalizer, fixed seeds (episode k starts from reset(seed=seed + k)); episodes run
vectorized across --num-envs environments and every attack is batched over them.
"""
import datetime
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
LEARNED = {"rs", "sa_rl", "pa_ad"}
SCHEMA = "robust-rl/eval/1"


@dataclass
class Args:
    model: tuple[str, ...]
    """checkpoint(s) to evaluate (.safetensors written by any robust-rl script)"""
    attacks: tuple[str, ...] = ("fast",)
    """attacks to run: names among random critic mad rs sa_rl pa_ad, or `fast` (random critic mad rs) or `all`"""
    epsilon: Optional[float] = None
    """l_inf budget in normalized-observation units (default: the env's, e.g. HalfCheetah 0.15, Hopper 0.075)"""
    epsilons: Optional[tuple[float, ...]] = None
    """eps sweep: evaluate every attack at each of these budgets and write a return-vs-eps curve"""
    episodes: int = 50
    """episodes per (model, attack)"""
    num_envs: Optional[int] = None
    """environments stepped together (default: all episodes at once); 1 = the one-env protocol"""
    seed: int = 0
    """evaluation seed: episode k starts from env.reset(seed=seed + k)"""
    attack_steps: int = 10
    """gradient steps of the critic, MAD, RS and PA-AD attacks (step size eps / attack_steps)"""
    rs_steps: int = 200_000
    """environment steps to learn each robust-Sarsa Q function (cached next to the victim)"""
    sa_rl_steps: int = 1_000_000
    """environment steps to train the SA-RL adversary (the paper's budget; cached next to the victim)"""
    pa_ad_steps: int = 1_000_000
    """environment steps to train the PA-AD director (the paper's budget; cached next to the victim)"""
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
    """progress bars (default: only on an interactive terminal)"""


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def evaluate(policy, env_id, episodes=50, seed=0, num_envs=None, attack=None, on_episode=None):
    """Per-episode raw returns of the deterministic policy (frozen normalizer), episodes run vectorized.

    Episode k always starts from env.reset(seed=seed + k) and, if the attack draws noise, from its own
    torch.Generator seeded with seed + k: the returns do not depend on num_envs (batched == one by one).
    `attack(x, gens)` maps normalized observations [B, obs_dim] to perturbed ones (no re-clip).
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
        if attack is not None:
            x = attack(x, [gens[i] for i in active])
        with torch.no_grad():
            act = policy.actor(x).numpy()
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


def make_attack(name, policy, epsilon, args, model_path, env_id):
    """The attack object for `name`; learned attacks are fitted once and cached next to the victim."""
    from attacks.critic import CriticAttack
    from attacks.mad import MADAttack
    from attacks.random import RandomAttack

    if name == "random":
        return [RandomAttack(policy, epsilon)]
    if name == "critic":
        return [CriticAttack(policy, epsilon, steps=args.attack_steps)]
    if name == "mad":
        return [MADAttack(policy, epsilon, steps=args.attack_steps)]
    from attacks.checkpoint import policy_hash
    from attacks.pa_ad import PAADAttack
    from attacks.ppo_adversary import cache_path, fit_or_load
    from attacks.rs import RS_GRID, RobustSarsaAttack
    from attacks.sa_rl import SARLAttack

    if name == "rs":  # a small grid of Q functions; the caller reports the strongest
        candidates, fit_steps = [RobustSarsaAttack(policy, epsilon, attack_steps=args.attack_steps, **s) for s in RS_GRID], args.rs_steps
    elif name == "sa_rl":
        candidates, fit_steps = [SARLAttack(policy, epsilon)], args.sa_rl_steps
    else:
        candidates, fit_steps = [PAADAttack(policy, epsilon, pgd_steps=args.attack_steps)], args.pa_ad_steps
    victim = policy_hash(policy)
    for attack in candidates:
        cache = cache_path(model_path, victim, name, {**attack.settings, "steps": fit_steps, "seed": args.seed})
        loaded = fit_or_load(attack, cache, env_id, fit_steps, args.seed, show_progress(args))
        print(f"{name}: {'loaded' if loaded else 'trained and cached'} {cache}", file=sys.stderr)
    return candidates


def show_progress(args):
    return sys.stderr.isatty() if args.progress is None else args.progress


def summary(returns):
    return dict(mean=float(np.mean(returns)), std=float(np.std(returns)), returns=[float(r) for r in returns])


def run_model(path, args, epsilon_override=None):
    """Evaluate one checkpoint: natural + every attack at one eps. Returns the result dict."""
    from tqdm import tqdm

    from attacks.checkpoint import CheckpointError, default_epsilon, load_checkpoint

    try:
        policy, meta = load_checkpoint(path)
    except CheckpointError as e:
        fail(str(e))
    env_id = meta["env_id"]
    try:
        spec_env = gym.make(env_id)
    except Exception:
        fail(f"{path}: checkpoint env {env_id!r} is not a registered gymnasium environment")
    obs_dim, act_dim = spec_env.observation_space.shape[0], spec_env.action_space.shape[0]
    spec_env.close()
    if (obs_dim, act_dim) != (meta["obs_dim"], meta["act_dim"]):
        fail(f"{path}: checkpoint dims (obs {meta['obs_dim']}, act {meta['act_dim']}) do not match {env_id} (obs {obs_dim}, act {act_dim})")
    epsilon = epsilon_override if epsilon_override is not None else args.epsilon
    if epsilon is None:
        epsilon = default_epsilon(env_id)
        if epsilon is None:
            fail(f"no default attack budget for {env_id}: pass --epsilon")
    names = expand_attacks(args.attacks)
    bar = show_progress(args)
    result = dict(model=path, env_id=env_id, script=meta.get("script"), global_step=meta.get("global_step"), epsilon=epsilon,
                  episodes=args.episodes, seed=args.seed, attacks={})

    def run(label, attack):
        t0 = time.time()
        with tqdm(total=args.episodes, desc=f"{os.path.basename(path)} {label}", disable=not bar, leave=False) as pbar:
            returns = evaluate(policy, env_id, args.episodes, args.seed, args.num_envs, attack, on_episode=lambda: pbar.update(1))
        out = summary(returns)
        out["seconds"] = round(time.time() - t0, 2)
        print(f"{os.path.basename(path)} eps {epsilon:g} {label}: {out['mean']:.1f} +- {out['std']:.1f} ({out['seconds']:.0f} s)", file=sys.stderr, flush=True)
        return out

    result["natural"] = run("natural", None)
    for name in names:
        try:
            candidates = make_attack(name, policy, epsilon, args, path, env_id)
        except (ValueError, OSError) as e:  # no critic in the checkpoint, an unreadable or unwritable attack cache
            fail(f"{path}: {name}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
        runs = [run(name, attack) for attack in candidates]
        best = min(range(len(runs)), key=lambda i: runs[i]["mean"])  # the strongest of a grid (robust Sarsa)
        result["attacks"][name] = runs[best]
        if len(runs) > 1:
            result["attacks"][name]["grid_means"] = [r["mean"] for r in runs]
    nat = result["natural"]["mean"]
    if result["attacks"]:
        worst = min(result["attacks"], key=lambda n: result["attacks"][n]["mean"])
        result["worst"] = dict(attack=worst, mean=result["attacks"][worst]["mean"])
        result["robustness"] = (result["worst"]["mean"] - nat) / abs(nat) if nat != 0 else None
    return result


def expand_attacks(names):
    out = []
    for n in names:
        for m in FAST if n == "fast" else ALL if n == "all" else [n]:
            if m not in ALL:
                fail(f"unknown attack {m!r} (choose from {' '.join(ALL)}, fast, all)")
            if m not in out:
                out.append(m)
    return out


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


def provenance():
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)), capture_output=True, text=True, timeout=10).stdout.strip() or None
    except Exception:
        commit = None
    import mujoco

    return dict(command=" ".join(sys.argv), git_commit=commit, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                machine=f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu", versions=dict(torch=torch.__version__, gymnasium=gym.__version__, mujoco=mujoco.__version__))


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
    if args.episodes <= 0 or (args.num_envs is not None and args.num_envs <= 0) or args.attack_steps <= 0:
        fail("--episodes, --num-envs and --attack-steps must be positive")
    if min(args.rs_steps, args.sa_rl_steps, args.pa_ad_steps) <= 0:
        fail("--rs-steps, --sa-rl-steps and --pa-ad-steps must be positive")
    for e in ([args.epsilon] if args.epsilon is not None else []) + list(args.epsilons or []):
        if not 0 <= e < math.inf:
            fail(f"attack budget must be finite and >= 0, got {e}")
    if args.plot and not args.epsilons:
        fail("--plot needs --epsilons")
    if args.torch_threads <= 0:
        fail(f"--torch-threads must be positive, got {args.torch_threads}")
    expand_attacks(args.attacks)
    # fail now, not after an hour of evaluation: every model readable, every output folder writable
    from attacks.checkpoint import CheckpointError, read_checkpoint

    for path in args.model:
        try:
            read_checkpoint(path)
        except CheckpointError as e:
            fail(str(e))
    for out_path in (args.json, args.markdown, args.plot):
        if out_path and not os.access(os.path.dirname(os.path.abspath(out_path)), os.W_OK):
            fail(f"{out_path}: its folder does not exist or is not writable")
    torch.set_num_threads(args.torch_threads)
    out = dict(schema=SCHEMA, **provenance())
    if args.epsilons:
        sweep = {path: [run_model(path, args, e) for e in args.epsilons] for path in args.model}
        for path, points in sweep.items():
            print(f"\n{path}")
            print(table(points))
        out["sweep"] = sweep
        if args.plot:
            plot_sweep(sweep, args.plot)
            print(f"plot written to {args.plot}")
        results = [p for points in sweep.values() for p in points]
    else:
        results = [run_model(path, args) for path in args.model]
        print(table(results))
        out["results"] = results
    if args.json:
        write_atomic(args.json, json.dumps(out, indent=1))
    if args.markdown:
        write_atomic(args.markdown, table(results) + "\n")
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=vars(args), job_type="eval")
        for r in results:
            wandb.log({"eval/natural_return": r["natural"]["mean"], **{f"eval/{n}_return": a["mean"] for n, a in r["attacks"].items()},
                       "eval/epsilon": r["epsilon"]})
        wandb.finish()
    return out


if __name__ == "__main__":
    import tyro

    main(tyro.cli(Args))
