"""Steps/s of ppo_continuous.py at the paper settings (1 env, 2048 steps/iteration, 10 epochs x 32 minibatches,
1 torch thread), optionally side by side with other training commands, run alternately so that background
load hits all of them alike.

    python benchmark/speed.py --steps 40960 --repeats 3
    python benchmark/speed.py --compare "cleanrl=/tmp/cleanrl/.venv/bin/python /tmp/cleanrl/ppo_continuous_action.py --no-capture-video"
    python benchmark/speed.py --scripts ppo_continuous.py barppo.py sappo.py arppo.py   # robust-trainer overhead

SPS is read from each run's last `SPS` figure (steps / wall-clock since the start of training; both our scripts
and CleanRL's print it). Our scripts run from a temporary folder with --no-save-model --eval-episodes 0.
"""
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Optional

import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Args:
    env_id: str = "HalfCheetah-v4"
    """environment"""
    steps: int = 40960
    """training steps per run (20 iterations of 2048)"""
    repeats: int = 3
    """runs per command, interleaved"""
    scripts: tuple[str, ...] = ("ppo_continuous.py",)
    """our training scripts to time"""
    compare: tuple[str, ...] = ()
    """other commands as NAME=COMMAND (--env-id, --total-timesteps and --seed are appended)"""
    extra: str = ""
    """extra flags for our scripts"""
    json: Optional[str] = None
    """write the raw numbers here"""


def sps_of(output):
    found = re.findall(r"SPS[:=]?\s*(\d+)", output)
    return int(found[-1]) if found else None


def main(args):
    commands = {s: [sys.executable, os.path.join(ROOT, s), "--no-save-model", "--eval-episodes", "0", "--torch-threads", "1", *shlex.split(args.extra)] for s in args.scripts}
    for item in args.compare:
        name, _, cmd = item.partition("=")
        commands[name] = shlex.split(cmd)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=ROOT, PYTHONWARNINGS="ignore")
    results = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name, cmd in commands.items():
                full = cmd + ["--env-id", args.env_id, "--total-timesteps", str(args.steps), "--seed", str(rep + 1)]
                proc = subprocess.run(full, cwd=tmp, env=env, capture_output=True, text=True)
                sps = sps_of(proc.stdout + proc.stderr)
                if proc.returncode != 0 or sps is None:
                    sys.exit(f"error: {name} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
                results[name].append(sps)
                print(f"run {rep + 1} {name}: {sps} SPS", flush=True)
    base = statistics.median(results[args.scripts[0]])
    print(f"\n{'command':40s} {'median SPS':>10s} {'runs':>24s} {'vs ' + args.scripts[0]:>24s}")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"{name:40s} {med:10.0f} {str(values):>24s} {med / base:23.2f}x  (wall-clock ratio {base / med:.2f})")
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(dict(env_id=args.env_id, steps=args.steps, results=results), f, indent=1)


if __name__ == "__main__":
    main(tyro.cli(Args))
