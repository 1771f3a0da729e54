"""The Kuhn poker experiment of Liu et al. (arXiv 2305.17342, Fig. 2): the gap (robust optimum - the victim's worst
case; the exploitability above the most robust policy's, 0 = most robust) over training, for the min oracle
(Algorithm 1), two timescales (Algorithm 2) at ratios 10 and 100, and a single timescale, at eps_pi 0.5 and 1.0.

    python benchmark/kuhn_fig2.py                       # 5 seeds, 2000 iterations: a few minutes on one core
    python benchmark/kuhn_fig2.py --seeds 2 --iterations 300 --out /tmp/fig2

Every configuration is one `two_timescale_adv.py --env-id kuhn --num-seeds S` process with the same victim learning
rate (--victim-lr); the attacker's is victim_lr * ratio (two_timescale), victim_lr (single) or exact (min_oracle).
Writes `{out}.png` (mean +- 1 s.e. over seeds; top: last iterate, bottom: average iterate), `{out}.json` (every
seed's curve and final gaps) and prints the final gaps as a Markdown table generated from that JSON.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [("min_oracle", 1.0), ("two_timescale", 100.0), ("two_timescale", 10.0), ("single", 1.0)]


@dataclass
class Args:
    seeds: int = 5
    """seeds per configuration (the paper: 5)"""
    iterations: int = 2000
    """victim updates per run"""
    victim_lr: float = 0.01
    """the victim's learning rate in every configuration"""
    eps_pi: tuple[float, ...] = (0.5, 1.0)
    """attack budgets (one panel each)"""
    extra: str = ""
    """extra flags for two_timescale_adv.py (e.g. --parametrization softmax)"""
    out: str = os.path.join(ROOT, "benchmark", "results", "kuhn_fig2")
    """output path without extension (.png and .json are written)"""


def label(defense, ratio):
    return f"two timescales (ratio {ratio:g})" if defense == "two_timescale" else {"min_oracle": "min oracle", "single": "single timescale"}[defense]


def run_config(args, defense, ratio, eps_pi, workdir):
    cmd = [sys.executable, os.path.join(ROOT, "two_timescale_adv.py"), "--env-id", "kuhn", "--defense", defense, "--eps-pi", str(eps_pi),
           "--attacker-lr", str(args.victim_lr * (ratio if defense == "two_timescale" else 10.0)),
           "--timescale-ratio", str(ratio if defense == "two_timescale" else 10.0), "--iterations", str(args.iterations),
           "--num-seeds", str(args.seeds), *args.extra.split()]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    runs = []
    for path in sorted(glob.glob(os.path.join(workdir, "runs", "kuhn__*", "metrics.json"))):
        m = json.load(open(path))
        a = m["args"]
        if (a["defense"], a["eps_pi"], a["iterations"]) == (defense, eps_pi, args.iterations) and (defense != "two_timescale" or a["timescale_ratio"] == ratio):
            runs.append(m)
    return cmd, runs


def main(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for eps_pi in args.eps_pi:
            for defense, ratio in CONFIGS:
                cmd, runs = run_config(args, defense, ratio, eps_pi, workdir)
                results.append(dict(defense=defense, ratio=ratio, eps_pi=eps_pi, command=" ".join(cmd[1:]), robust_optimum=runs[0]["robust_optimum"],
                                    iterations=runs[0]["curves"]["iteration"], seeds=[r["args"]["seed"] for r in runs],
                                    gap_last=[r["curves"]["gap_last"] for r in runs], gap_avg=[r["curves"]["gap_avg"] for r in runs]))
                print(f"{label(defense, ratio)}, eps_pi {eps_pi:g}: final gap {np.mean([g[-1] for g in results[-1]['gap_last']]):.4f}", flush=True)
    fig, axes = plt.subplots(2, len(args.eps_pi), figsize=(5.5 * len(args.eps_pi), 7), squeeze=False, sharex=True)
    for col, eps_pi in enumerate(args.eps_pi):
        for row, key in enumerate(("gap_last", "gap_avg")):
            ax = axes[row][col]
            for r in (r for r in results if r["eps_pi"] == eps_pi):
                curves = np.array(r[key])
                mean, se = curves.mean(0), curves.std(0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else 0 * curves[0]
                ax.plot(r["iterations"], mean, label=label(r["defense"], r["ratio"]))
                ax.fill_between(r["iterations"], mean - se, mean + se, alpha=0.2)
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.set_title(f"eps_pi = {eps_pi:g}, {'last' if key == 'gap_last' else 'average'} iterate", fontsize=10)
            ax.set_ylabel("gap to the most robust victim")
            ax.grid(alpha=0.3)
        axes[1][col].set_xlabel("iteration (victim updates)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Kuhn poker, victim = player 2, benign alpha uniform, victim lr {args.victim_lr:g}, {args.seeds} seeds (mean +- s.e.)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=110)
    with open(args.out + ".json", "w") as f:
        json.dump(dict(schema="robust-rl/kuhn_fig2/1", args=vars(args), results=results), f)
    print(table(results))


def table(results):
    """Final gap per configuration, mean +- s.e. over seeds, last and average iterate (Markdown)."""
    lines = ["| eps_pi | defense | final gap, last iterate | final gap, average iterate | seeds |", "|---|---|---|---|---|"]
    for r in results:
        last, avg = np.array([g[-1] for g in r["gap_last"]]), np.array([g[-1] for g in r["gap_avg"]])
        se = lambda x: x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else 0.0
        lines.append(f"| {r['eps_pi']:g} | {label(r['defense'], r['ratio'])} | {last.mean():.4f} +- {se(last):.4f} | {avg.mean():.4f} +- {se(avg):.4f} | {len(last)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main(tyro.cli(Args))
