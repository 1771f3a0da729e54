"""Steps/s of ppo_continuous.py at the paper settings (1 env, 2048 steps/iteration, 10 epochs x 32 minibatches,
1 torch thread), optionally side by side with other training commands, run alternately so that background
load hits all of them alike.

    python benchmark/speed.py --steps 40960 --repeats 3
    python benchmark/speed.py --compare "cleanrl=/tmp/cleanrl/.venv/bin/python /tmp/cleanrl/ppo_continuous_action.py --no-capture-video"
    python benchmark/speed.py --scripts ppo_continuous.py barppo.py sappo.py arppo.py   # robust-trainer overhead
    python benchmark/speed.py --num-seeds 1 8 --steps 20480 --repeats 2                # per-seed speed-up of --num-seeds

SPS is read from each run's last `SPS` figure (steps / wall-clock since the start of training; both our scripts
and CleanRL's print it; with --num-seeds N it counts every seed's steps, so SPS(N) / SPS(1) is the per-seed speed-up at
the same steps per seed). Our scripts run from a temporary folder with --no-save-model --eval-episodes 0. The peak
resident memory and the CPU time (user + system) of each run are read from the kernel (wait4): on a loaded
machine the CPU-time ratio of two single-threaded commands is a steadier cost ratio than their SPS ratio (it also
counts the seconds of start-up, which SPS leaves out).
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
    num_seeds: tuple[int, ...] = (1,)
    """run each of our scripts at each of these --num-seeds (steps per seed stay --steps)"""
    json: Optional[str] = None
    """write the raw numbers here"""


def sps_of(output):
    found = re.findall(r"SPS[:=]?\s*(\d+)", output)
    return int(found[-1]) if found else None


def main(args):
    commands = {}
    for s in args.scripts:
        for n in args.num_seeds:
            name = s if args.num_seeds == (1,) else f"{s} --num-seeds {n}"
            commands[name] = [sys.executable, os.path.join(ROOT, s), "--no-save-model", "--eval-episodes", "0", "--torch-threads", "1", "--num-seeds", str(n), *shlex.split(args.extra)]
    for item in args.compare:
        name, _, cmd = item.partition("=")
        commands[name] = shlex.split(cmd)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=ROOT, PYTHONWARNINGS="ignore")
    results, memory, cpu = {name: [] for name in commands}, {name: [] for name in commands}, {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name, cmd in commands.items():
                full = cmd + ["--env-id", args.env_id, "--total-timesteps", str(args.steps), "--seed", str(rep + 1)]
                with tempfile.TemporaryFile("w+") as out:
                    proc = subprocess.Popen(full, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
                    _, status, usage = os.wait4(proc.pid, 0)
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    out.seek(0)
                    output = out.read()
                sps = sps_of(output)
                if proc.returncode != 0 or sps is None:
                    sys.exit(f"error: {name} failed (exit {proc.returncode}): {output.strip().splitlines()[-1:]}")
                results[name].append(sps)
                memory[name].append(round(usage.ru_maxrss / 1024))  # KiB on Linux
                cpu[name].append(round(usage.ru_utime + usage.ru_stime, 2))
                print(f"run {rep + 1} {name}: {sps} SPS, {cpu[name][-1]} CPU s, peak memory {memory[name][-1]} MiB", flush=True)
    base_name = next(iter(commands))
    base, base_cpu = statistics.median(results[base_name]), statistics.median(cpu[base_name])
    print(f"\n{'command':40s} {'median SPS':>10s} {'runs':>24s} {'vs ' + base_name:>24s} {'peak MiB':>9s} {'CPU s':>8s}")
    for name, values in results.items():
        med, med_cpu = statistics.median(values), statistics.median(cpu[name])
        print(f"{name:40s} {med:10.0f} {str(values):>24s} {med / base:23.2f}x {max(memory[name]):9d} {med_cpu:8.1f}  "
              f"(wall-clock ratio {base / med:.2f}, CPU-time ratio {med_cpu / base_cpu:.2f})")
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(dict(env_id=args.env_id, steps=args.steps, results=results, peak_memory_mib=memory, cpu_seconds=cpu), f, indent=1)


if __name__ == "__main__":
    main(tyro.cli(Args))
