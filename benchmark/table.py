"""Markdown table of a training grid: per run the closing evaluation its log holds (natural, random, critic, MAD at
the training eps, 50 episodes), and, where `benchmark/results/grid/{script}{tag}__{env}__{seed}.json` exists (an
`eval_attacks.py --attacks all --json ...` of that run's checkpoint), the full evaluation's RS, SA-RL, PA-AD, worst
case and robustness. Medians are over the finished seeds.

    python benchmark/table.py --scripts ppo_continuous.py sappo.py barppo.py --envs HalfCheetah-v4
    python benchmark/table.py --scripts barppo.py --tag __nog --envs HalfCheetah-v4
"""
import json
import os
import re
import statistics
from dataclasses import dataclass

import tyro
from launch import find_log  # the grid's log names are launch.py's (benchmark/ is on sys.path when run as a script)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATTACKS = ("random", "critic", "mad")
LEARNED = ("rs", "sa_rl", "pa_ad")


@dataclass
class Args:
    scripts: tuple[str, ...] = ("barppo.py",)
    """training scripts"""
    envs: tuple[str, ...] = ("HalfCheetah-v4",)
    """env ids"""
    seeds: tuple[int, ...] = (1, 2, 3)
    """seeds"""
    tag: str = ""
    """log-name suffix of the runs (as given to launch.py)"""


def closing_eval(log, prefix=""):
    """{'natural': ..., 'random': ..., ...} from a training log's closing evaluation (the lines of one seed: `prefix`),
    or None if it has none."""
    if not log or not os.path.exists(log):
        return None
    text = open(log).read()
    nat = re.search(rf"^{re.escape(prefix)}eval: natural return (\S+)", text, re.M)
    if not nat:
        return None
    out = {"natural": float(nat.group(1))}
    for name in ATTACKS:
        m = re.search(rf"^{re.escape(prefix)}eval: {name} return (\S+)", text, re.M)
        if m:
            out[name] = float(m.group(1))
    return out


def full_eval(path):
    if not os.path.exists(path):
        return None
    (res,) = json.load(open(path))["results"]
    return res


def fmt(x):
    return "" if x is None else f"{x:.0f}"


def main(args):
    print("| script | env | seed | natural | random | critic | MAD | RS | SA-RL | PA-AD | worst | robustness |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for script in args.scripts:
        for env in args.envs:
            naturals = []
            for seed in args.seeds:
                log, prefix = find_log(script, env, seed, args.tag)
                ev = closing_eval(log, prefix or "")
                if ev is None:
                    continue
                naturals.append(ev["natural"])
                full = full_eval(os.path.join(ROOT, "benchmark", "results", "grid", f"{script[:-3]}{args.tag}__{env}__{seed}.json"))
                learned = [full["attacks"][a]["mean"] if full and a in full["attacks"] else None for a in LEARNED]
                worst = f"{full['worst']['mean']:.0f} ({full['worst']['attack']})" if full else ""
                rob = f"{full['robustness']:.2f}" if full else ""
                cells = [fmt(ev.get(k)) for k in ("natural", *ATTACKS)] + [fmt(x) for x in learned]
                print(f"| {script}{args.tag} | {env} | {seed} | " + " | ".join(cells) + f" | {worst} | {rob} |")
            if naturals:
                print(f"| {script}{args.tag} | {env} | median of {len(naturals)} | {statistics.median(naturals):.0f} | | | | | | | | |")


if __name__ == "__main__":
    main(tyro.cli(Args))
