"""Run a grid of training runs (script x env x seed) through a local process pool, one process per core, and
pick each (script, env) median-seed checkpoint for the zoo.

    python benchmark/launch.py --scripts ppo_continuous.py --envs HalfCheetah-v4 Hopper-v4 Walker2d-v4 --seeds 1 2 3
    python benchmark/launch.py --scripts barppo.py --envs Hopper-v4 --seeds 1 2 3 --extra="--kappa 0.3" --jobs 2
    python benchmark/launch.py --zoo --scripts ppo_continuous.py --envs HalfCheetah-v4    # copy the median seed to zoo/

Each run writes `benchmark/logs/{script}__{env}__{seed}{tag}.log` and its run folder under `runs/`; the final
deterministic evaluation (`--eval-episodes 50`) is parsed from the log. More than one machine: hand the same
commands (`--dry-run` prints them) to an existing cluster engine; this launcher does not schedule across hosts.
"""
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGS = os.path.join(ROOT, "benchmark", "logs")


@dataclass
class Args:
    scripts: tuple[str, ...] = ("ppo_continuous.py",)
    """training scripts"""
    envs: tuple[str, ...] = ("HalfCheetah-v4",)
    """env ids"""
    seeds: tuple[int, ...] = (1, 2, 3)
    """seeds"""
    extra: str = ""
    """extra flags for every run (write --extra="--no-guidance" with =, since the value starts with --)"""
    tag: str = ""
    """suffix for log names (e.g. __nog for --no-guidance)"""
    jobs: int = 2
    """concurrent runs (one per core)"""
    dry_run: bool = False
    """print the commands only"""
    zoo: bool = False
    """do not train: copy each (script, env) median-seed checkpoint to zoo/{script}{tag}__{env}.safetensors"""


def log_path(script, env, seed, tag):
    return os.path.join(LOGS, f"{script[:-3]}__{env}__{seed}{tag}.log")


def parse(log):
    """(natural return of the final evaluation, checkpoint path) from a run's log, or (None, None)."""
    text = open(log).read() if os.path.exists(log) else ""
    ret = re.search(r"eval: natural return (\S+)", text)
    ckpt = re.search(r"model saved to (\S+)", text)
    return (float(ret.group(1)) if ret else None), (os.path.join(ROOT, ckpt.group(1)) if ckpt else None)


def main(args):
    os.makedirs(LOGS, exist_ok=True)
    if args.extra and not args.tag:
        sys.exit("error: --extra needs a --tag, so that runs with other flags do not share log names")
    runs = [(s, e, seed) for s in args.scripts for e in args.envs for seed in args.seeds]
    if args.zoo:
        os.makedirs(os.path.join(ROOT, "zoo"), exist_ok=True)
        for script in args.scripts:
            for env in args.envs:
                done = [(parse(log_path(script, env, seed, args.tag)), seed) for seed in args.seeds]
                done = [(r, c, seed) for (r, c), seed in done if r is not None and c is not None]
                if not done:
                    print(f"{script} {env}: no finished run")
                    continue
                done.sort()
                ret, ckpt, seed = done[(len(done) - 1) // 2]
                dst = os.path.join(ROOT, "zoo", f"{script[:-3]}{args.tag}__{env}.safetensors")
                shutil.copyfile(ckpt, dst + ".tmp")
                os.replace(dst + ".tmp", dst)
                print(f"{script} {env}: returns {[round(r) for r, _, _ in done]} (median {statistics.median([r for r, _, _ in done]):.0f}); seed {seed} ({ret:.0f}) -> {os.path.relpath(dst, ROOT)}")
        return

    def one(run):
        script, env, seed = run
        cmd = [sys.executable, os.path.join(ROOT, script), "--env-id", env, "--seed", str(seed), "--eval-episodes", "50", *shlex.split(args.extra)]
        if args.dry_run:
            print(shlex.join(cmd))
            return 0
        with open(log_path(script, env, seed, args.tag), "w") as f:
            f.write(f"# {shlex.join(cmd)}\n")
            f.flush()
            return subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        codes = list(pool.map(one, runs))
    for run, code in zip(runs, codes):
        print(f"{run}: exit {code}, natural return {parse(log_path(run[0], run[1], run[2], args.tag))[0]}")
    sys.exit(1 if any(codes) else 0)  # a killed run has a negative code


if __name__ == "__main__":
    main(tyro.cli(Args))
