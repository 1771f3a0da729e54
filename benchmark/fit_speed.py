"""Wall-clock of the learned attacks' fits, one after another (each attack's fit(), the reference) and side by side
in one process (attacks.ppo_adversary.fit_many, or attacks.rs.fit_many for robust Sarsa: what eval_attacks.py does),
against the zoo's Hopper-v4 agents; fits alternate between the two ways so that background load hits both alike.
Robust Sarsa fits the Q functions of RS_GRID per victim (its evaluation's grid).

    python benchmark/fit_speed.py --attack action_mix --steps 20480 --repeats 3
    python benchmark/fit_speed.py --attack rs --steps 20480 --repeats 2
"""
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from attacks import rs  # noqa: E402
from attacks.checkpoint import load_checkpoint  # noqa: E402
from attacks.ppo_adversary import fit_many  # noqa: E402


@dataclass
class Args:
    attack: Literal["rs", "sa_rl", "pa_ad", "sa_rl_ref", "pa_ad_ref", "action_mix"] = "action_mix"
    """which learned attack"""
    victims: tuple[str, ...] = ("ppo_continuous", "barppo", "sappo")
    """zoo agents (Hopper-v4) to fit against, one fit each (rs: one per entry of RS_GRID)"""
    steps: int = 20480
    """env steps per fit"""
    repeats: int = 3
    """measurements of each way, alternating"""
    json: Optional[str] = None
    """write the raw seconds here"""


def make(name, policy):
    """The attacks eval_attacks.py fits for one victim: one, or robust Sarsa's grid."""
    from eval_attacks import Args as EvalArgs
    from eval_attacks import make_attack

    return [attack for _, attack in make_attack(name, policy, 0.075, EvalArgs(model=("x",)))]


def main(args):
    torch.set_num_threads(1)
    victims = [load_checkpoint(os.path.join(ROOT, "zoo", f"{v}__Hopper-v4.safetensors"), env_id="Hopper-v4")[0] for v in args.victims]
    seconds = {"one after another": [], "side by side": []}
    for rep in range(args.repeats):
        t = time.time()
        for v in victims:
            for attack in make(args.attack, v):
                attack.fit("Hopper-v4", args.steps, seed=rep)
        seconds["one after another"].append(round(time.time() - t, 2))
        t = time.time()
        (rs.fit_many if args.attack == "rs" else fit_many)([a for v in victims for a in make(args.attack, v)], "Hopper-v4", args.steps, seed=rep)
        seconds["side by side"].append(round(time.time() - t, 2))
        print(f"run {rep + 1}: " + ", ".join(f"{k} {v[-1]} s" for k, v in seconds.items()), flush=True)
    a, b = (statistics.median(v) for v in seconds.values())
    fits = len(victims) * len(make(args.attack, victims[0]))
    print(f"{args.attack}, {fits} fits of {args.steps} steps: median {a:.1f} s one after another, {b:.1f} s side by side: {a / b:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(attack=args.attack, victims=list(args.victims), steps=args.steps, seconds=seconds), f, indent=1)


if __name__ == "__main__":
    main(tyro.cli(Args))
