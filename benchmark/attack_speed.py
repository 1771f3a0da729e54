"""Wall-clock of the fast attack suite, vectorized (all episodes at once, batched attacks) vs the one-env protocol
of the original SA-PPO code (one env, batch-1 attacks), side by side on the same checkpoint, and a check that
both give the same per-episode returns.

    python benchmark/attack_speed.py --model zoo/ppo_continuous__HalfCheetah-v4.safetensors --episodes 50

The `rs` attack's Q functions are learned once and cached next to the checkpoint; their fitting time is not
part of this measurement (run eval_attacks.py once first, or the first configuration pays for it).
"""
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Args:
    model: str
    """checkpoint to attack"""
    attacks: tuple[str, ...] = ("random", "critic", "mad", "rs")
    """attacks to time (the `fast` preset)"""
    episodes: int = 50
    """episodes per attack"""
    json: str = ""
    """write the numbers here"""


def run(args, num_envs, out):
    cmd = [sys.executable, os.path.join(ROOT, "eval_attacks.py"), "--model", args.model, "--attacks", *args.attacks,
           "--episodes", str(args.episodes), "--num-envs", str(num_envs), "--json", out]
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: eval_attacks.py failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.load(open(out))["results"][0]


def main(args):
    with tempfile.TemporaryDirectory() as tmp:
        batched = run(args, args.episodes, os.path.join(tmp, "b.json"))
        single = run(args, 1, os.path.join(tmp, "s.json"))
    rows = {"natural": (batched["natural"], single["natural"])}
    rows.update({n: (batched["attacks"][n], single["attacks"][n]) for n in args.attacks})
    print(f"{'attack':10s} {'batched s':>10s} {'one-env s':>10s} {'speed-up':>9s}  same returns")
    tb = ts = 0.0
    for name, (b, s) in rows.items():
        tb, ts = tb + b["seconds"], ts + s["seconds"]
        print(f"{name:10s} {b['seconds']:10.1f} {s['seconds']:10.1f} {s['seconds'] / b['seconds']:8.1f}x  {b['returns'] == s['returns']}")
    print(f"{'total':10s} {tb:10.1f} {ts:10.1f} {ts / tb:8.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(model=args.model, episodes=args.episodes, batched=batched, one_env=single), f, indent=1)


if __name__ == "__main__":
    main(tyro.cli(Args))
