"""Run a grid of training runs (script x env x seed) through a local process pool, one process per core, and
pick each (script, env) median-seed checkpoint for the zoo.

    python benchmark/launch.py --scripts ppo_continuous.py --envs HalfCheetah-v4 Hopper-v4 Walker2d-v4 --seeds 1 2 3
    python benchmark/launch.py --scripts barppo.py --envs Hopper-v4 --seeds 1 2 3 --extra="--kappa 0.3" --jobs 2
    python benchmark/launch.py --scripts barppo.py --envs Hopper-v4 --seeds 1 2 3 4 5 --seeds-per-process 5
    python benchmark/launch.py --zoo --scripts ppo_continuous.py --envs HalfCheetah-v4    # copy the median seed to zoo/

Each process trains --seeds-per-process consecutive seeds of one (script, env) side by side (`--num-seeds`; default 1:
one process per seed) and writes `benchmark/logs/{script}__{env}__{seed}{tag}.log` (one seed) or
`..._{first}-{last}{tag}.log` (several), and one run folder per seed under `runs/`; each seed's final deterministic
evaluation (`--eval-episodes 50`) is parsed from the log. More than one machine: hand the same
commands (`--dry-run` prints them) to an existing cluster engine; this launcher does not schedule across hosts.
"""
import glob
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
    """concurrent processes (one per core)"""
    seeds_per_process: int = 1
    """consecutive seeds of one (script, env) trained together in one process (--num-seeds): the cheap way to many seeds"""
    dry_run: bool = False
    """print the commands only"""
    zoo: bool = False
    """do not train: copy each (script, env) median-seed checkpoint to zoo/{script}{tag}__{env}.safetensors"""


def log_path(script, env, seeds, tag):
    """The log of one process training `seeds` (consecutive) of (script, env)."""
    name = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    return os.path.join(LOGS, f"{script[:-3]}__{env}__{name}{tag}.log")


def chunks(seeds, size):
    """Runs of at most `size` consecutive seeds (a gap starts a new process: --num-seeds takes seed, seed+1, ...)."""
    out = []
    for seed in seeds:
        if out and len(out[-1]) < size and seed == out[-1][-1] + 1:
            out[-1].append(seed)
        else:
            out.append([seed])
    return out


def find_log(script, env, seed, tag):
    """(the log of the process that trained seed, the prefix of that seed's lines in it), or (None, None). A
    several-seed log prefixes each seed's lines with `seed K: `."""
    for log in glob.glob(os.path.join(LOGS, f"{script[:-3]}__{env}__*{tag}.log")):
        m = re.fullmatch(rf"{re.escape(script[:-3])}__{re.escape(env)}__(\d+)(?:-(\d+))?{re.escape(tag)}\.log", os.path.basename(log))
        if m and int(m.group(1)) <= seed <= int(m.group(2) or m.group(1)):
            return log, (f"seed {seed}: " if m.group(2) else "")
    return None, None


def parse(script, env, seed, tag):
    """(natural return of seed's final evaluation, its checkpoint path) from the log that trained it, or (None, None)."""
    log, prefix = find_log(script, env, seed, tag)
    text = open(log).read() if log else ""
    ret = re.search(rf"^{re.escape(prefix or '')}eval: natural return (\S+)", text, re.M)
    ckpt = re.search(rf"^{re.escape(prefix or '')}model saved to (\S+)", text, re.M)
    return (float(ret.group(1)) if ret else None), (os.path.join(ROOT, ckpt.group(1)) if ckpt else None)


def main(args):
    os.makedirs(LOGS, exist_ok=True)
    if args.extra and not args.tag:
        sys.exit("error: --extra needs a --tag, so that runs with other flags do not share log names")
    if args.seeds_per_process <= 0 or args.jobs <= 0:
        sys.exit("error: --seeds-per-process and --jobs must be positive")
    runs = [(s, e, group) for s in args.scripts for e in args.envs for group in chunks(sorted(set(args.seeds)), args.seeds_per_process)]
    if args.zoo:
        os.makedirs(os.path.join(ROOT, "zoo"), exist_ok=True)
        for script in args.scripts:
            for env in args.envs:
                done = [(parse(script, env, seed, args.tag), seed) for seed in args.seeds]
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
        script, env, seeds = run
        cmd = [sys.executable, os.path.join(ROOT, script), "--env-id", env, "--seed", str(seeds[0]), "--num-seeds", str(len(seeds)),
               "--eval-episodes", "50", *shlex.split(args.extra)]
        if args.dry_run:
            print(shlex.join(cmd))
            return 0
        with open(log_path(script, env, seeds, args.tag), "w") as f:
            f.write(f"# {shlex.join(cmd)}\n")
            f.flush()
            return subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        codes = list(pool.map(one, runs))
    if args.dry_run:
        return
    for (script, env, seeds), code in zip(runs, codes):
        print(f"{script} {env} seeds {seeds}: exit {code}, natural returns {[parse(script, env, seed, args.tag)[0] for seed in seeds]}")
    sys.exit(1 if any(codes) else 0)  # a killed run has a negative code


if __name__ == "__main__":
    main(tyro.cli(Args))
