"""Wall-clock of the learned attacks' fits, one after another (each attack's fit(), the reference) and side by side
in one process (attacks.ppo_adversary.fit_many, or attacks.rs.fit_many for robust Sarsa: what eval_attacks.py does),
against the zoo's Hopper-v4 agents; fits alternate between the two ways so that background load hits both alike.
Robust Sarsa fits the Q functions of RS_GRID per victim (its evaluation's grid).

    python benchmark/fit_speed.py --attack action_mix --steps 20480 --repeats 3
    python benchmark/fit_speed.py --attack rs --steps 20480 --repeats 2
    python benchmark/fit_speed.py --sumo --steps 20480 --repeats 3

--sumo: the action_mix adversaries of agent 1 in the sumo-puck arena against the self-play victims of
benchmark/checkpoints (benchmark/grids/sumo.sh), at eps_pi 1.0, instead of the zoo's Hopper-v4 agents.
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
    sumo: bool = False
    """the sumo-puck self-play victims (benchmark/checkpoints) and their arena adversaries (action_mix only)"""


def make(name, policy):
    """The attacks eval_attacks.py fits for one victim: one, or robust Sarsa's grid."""
    from eval_attacks import Args as EvalArgs
    from eval_attacks import make_attack

    return [attack for _, attack in make_attack(name, policy, 0.075, EvalArgs(model=("x",)))]


SUMO_VICTIMS = [os.path.join(ROOT, "benchmark", "checkpoints", f"two_timescale_adv__benign__sumo-puck__{seed}.safetensors") for seed in (1, 2, 3)]


def make_arena(_, path):
    """The arena adversary eval_attacks.py fits for a sumo checkpoint (its victim and benign policy), at eps_pi 1.0."""
    from eval_attacks import Args as EvalArgs
    from eval_attacks import arena_attack, open_model

    eval_args = EvalArgs(model=(path,), eps_pi=1.0)
    return [attack for _, attack in arena_attack(open_model(path, eval_args), eval_args)]


def main(args):
    torch.set_num_threads(1)
    if args.sumo:
        if args.attack != "action_mix":
            sys.exit("error: --sumo fits action_mix adversaries only")
        victims, build, env_id = SUMO_VICTIMS, make_arena, "sumo-puck"
    else:
        victims = [load_checkpoint(os.path.join(ROOT, "zoo", f"{v}__Hopper-v4.safetensors"), env_id="Hopper-v4")[0] for v in args.victims]
        build, env_id = make, "Hopper-v4"
    seconds = {"one after another": [], "side by side": []}
    for rep in range(args.repeats):
        t = time.time()
        for v in victims:
            for attack in build(args.attack, v):
                attack.fit(env_id, args.steps, seed=rep)
        seconds["one after another"].append(round(time.time() - t, 2))
        t = time.time()
        (rs.fit_many if args.attack == "rs" else fit_many)([a for v in victims for a in build(args.attack, v)], env_id, args.steps, seed=rep)
        seconds["side by side"].append(round(time.time() - t, 2))
        print(f"run {rep + 1}: " + ", ".join(f"{k} {v[-1]} s" for k, v in seconds.items()), flush=True)
    a, b = (statistics.median(v) for v in seconds.values())
    fits = len(victims) * len(build(args.attack, victims[0]))
    print(f"{args.attack}, {fits} fits of {args.steps} steps: median {a:.1f} s one after another, {b:.1f} s side by side: {a / b:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(attack=args.attack, victims=[os.path.relpath(v, ROOT) for v in SUMO_VICTIMS] if args.sumo else list(args.victims), env_id=env_id, steps=args.steps, seconds=seconds), f, indent=1)


if __name__ == "__main__":
    main(tyro.cli(Args))
