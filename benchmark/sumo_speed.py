"""Steps/s of the sumo arena (envs/sumo.py), single-threaded: puck-sumo through PettingZoo's dict API and through the
lean array path, and ant-sumo per agent-step against gymnasium's Ant-v5 per step. The contenders run alternately,
round after round, in one process, so that background load hits all of them alike; the table gives medians.

    python benchmark/sumo_speed.py
    python benchmark/sumo_speed.py --rounds 5 --json benchmark/results/sumo_speed.json

Every contender plays the same pre-drawn uniform random actions and resets when its episode ends (resets are
part of the time). Two clocks: wall-clock steps/s, and steps per second of this thread's CPU time, which leaves out
the time other processes hold the core (closer to an idle machine's wall-clock when the machine is loaded).
Ant-v5 is gymnasium's bare env (`.unwrapped`: no TimeLimit/OrderEnforcing/checker wrappers), reset on termination
and after 1000 steps. One ant-sumo env step moves two ants: agent-steps/s = 2 x env steps/s.
"""
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

import gymnasium as gym
import mujoco
import numpy as np
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from envs.sumo import parallel_env  # noqa: E402


@dataclass
class Args:
    puck_steps: int = 20000
    """puck-sumo env steps per contender per round"""
    ant_steps: int = 3000
    """ant-sumo env steps (and Ant-v5 steps) per round"""
    rounds: int = 3
    """rounds; the contenders alternate inside each"""
    seed: int = 0
    """seed of the actions and the resets"""
    json: Optional[str] = None
    """write the numbers here"""


def timed(fn):
    wall, cpu = time.perf_counter(), time.thread_time()
    n = fn()
    return n / (time.perf_counter() - wall), n / (time.thread_time() - cpu)


def sumo_dict(env, actions, seed):
    def run():
        env.reset(seed=seed)
        for a in actions:
            env.step({"agent0": a[0], "agent1": a[1]})
            if not env.agents:
                env.reset()
        return len(actions)
    return run


def sumo_array(env, actions, seed):
    def run():
        env.reset_array(seed)
        for a in actions:
            if env.step_array(a)[2]:
                env.reset_array()
        return len(actions)
    return run


def gym_ant(env, actions, seed):
    def run():
        env.reset(seed=seed)
        t = 0
        for a in actions:
            _, _, terminated, _, _ = env.step(a[0])
            t += 1
            if terminated or t == 1000:
                env.reset()
                t = 0
        return len(actions)
    return run


def main(args):
    for name in ("puck_steps", "ant_steps", "rounds"):
        if getattr(args, name) < 1:
            sys.exit(f"error: --{name.replace('_', '-')} must be >= 1")
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(args.seed)
    puck_actions = rng.uniform(-1, 1, (args.puck_steps, 2, 3)).astype(np.float32)
    ant_actions = rng.uniform(-1, 1, (args.ant_steps, 2, 8)).astype(np.float32)
    puck, ant, gym_env = parallel_env("puck"), parallel_env("ant"), gym.make("Ant-v5").unwrapped
    contenders = {
        "puck-sumo, ParallelEnv.step (dicts)": sumo_dict(puck, puck_actions, args.seed),
        "puck-sumo, step_array (lean path)": sumo_array(puck, puck_actions, args.seed),
        "ant-sumo, ParallelEnv.step (dicts)": sumo_dict(ant, ant_actions, args.seed),
        "gymnasium Ant-v5 (bare env)": gym_ant(gym_env, ant_actions, args.seed),
    }
    load_before = os.getloadavg()
    started = datetime.now(timezone.utc)
    wall = {k: [] for k in contenders}
    cpu = {k: [] for k in contenders}
    for r in range(args.rounds):
        for name, fn in contenders.items():
            w, c = timed(fn)
            wall[name].append(round(w))
            cpu[name].append(round(c))
            print(f"round {r + 1} {name}: {w:.0f} steps/s wall, {c:.0f} per CPU s", flush=True)
    load_after = os.getloadavg()
    med = {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in contenders}

    print(f"\n{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average {load_before[0]:.2f} before / "
          f"{load_after[0]:.2f} after (1 min); mujoco {mujoco.__version__}, gymnasium {gym.__version__}, numpy {np.__version__}")
    print(f"{'contender':40s} {'steps/s wall':>13s} {'per CPU s':>10s}")
    for name, (w, c) in med.items():
        print(f"{name:40s} {w:13.0f} {c:10.0f}")
    ant_sumo, ant_v5 = med["ant-sumo, ParallelEnv.step (dicts)"], med["gymnasium Ant-v5 (bare env)"]
    agent = (2 * ant_sumo[0], 2 * ant_sumo[1])
    slowdown = (ant_v5[0] / agent[0], ant_v5[1] / agent[1])
    print(f"{'ant-sumo agent-steps (2 per env step)':40s} {agent[0]:13.0f} {agent[1]:10.0f}")
    print(f"ant-sumo time per agent-step / Ant-v5 time per step: {slowdown[0]:.2f} wall, {slowdown[1]:.2f} CPU (target <= 2)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(date_utc=started.isoformat(timespec="seconds"), command=" ".join(sys.argv), cores=os.cpu_count(),
                           loadavg_before=load_before, loadavg_after=load_after, python=platform.python_version(),
                           mujoco=mujoco.__version__, gymnasium=gym.__version__, numpy=np.__version__, args=vars(args),
                           wall_steps_per_s=wall, cpu_steps_per_s=cpu, median_wall=dict((k, v[0]) for k, v in med.items()),
                           median_cpu=dict((k, v[1]) for k, v in med.items()),
                           ant_agent_step_slowdown_vs_ant_v5=dict(wall=slowdown[0], cpu=slowdown[1])), f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main(tyro.cli(Args))
