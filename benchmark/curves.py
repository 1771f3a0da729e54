"""Scalar curves from run folders' TensorBoard events into one small JSON, so that the learning curves of a grid
can be committed (runs/ is not) and plotted by benchmark/report.py.

    python benchmark/curves.py --runs runs/HalfCheetah-v4__barppo__* --out benchmark/results/curves/barppo__kappa0.3__HalfCheetah-v4.json
    python benchmark/curves.py --runs runs/Hopper-v4__two_timescale_adv__* --tags charts/episodic_return adversary/victim_grad_norm --out ...

Each run keeps its seed (from the checkpoint's flags) and, per tag, the (step, value) pairs thinned to at most
--points by averaging consecutive points (a plot of 2,000 episodes needs no more).
"""
import glob
import json
import os
import sys
from dataclasses import dataclass
from typing import Optional

import numpy as np
import tyro


@dataclass
class Args:
    runs: tuple[str, ...]
    """run folders (each with TensorBoard events)"""
    out: str
    """the JSON to write"""
    tags: tuple[str, ...] = ("charts/episodic_return",)
    """scalar tags to keep"""
    points: int = 200
    """at most this many points per curve (means of consecutive points)"""
    label: Optional[str] = None
    """a name for the curves (default: the JSON's file name)"""


def read_scalars(run_dir, tags):
    """{tag: (steps, values)} of one run folder's events; the last value wins where a resumed run rewrote a step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in tags:
        if tag not in acc.Tags()["scalars"]:
            continue
        by_step = {e.step: e.value for e in acc.Scalars(tag)}
        steps = np.array(sorted(by_step), dtype=np.int64)
        out[tag] = (steps, np.array([by_step[s] for s in steps], dtype=np.float64))
    return out


def thin(steps, values, points):
    """At most `points` (step, value) pairs: each is the mean of a block of consecutive points (the last step of it)."""
    if len(steps) <= points:
        return steps.tolist(), values.tolist()
    blocks = np.array_split(np.arange(len(steps)), points)
    return [int(steps[b[-1]]) for b in blocks], [float(values[b].mean()) for b in blocks]


def run_seed(run_dir):
    """The seed of a run folder, from its checkpoint's flags, else from the folder name (env__exp__seed__time)."""
    for path in glob.glob(os.path.join(run_dir, "*.safetensors")):
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            meta = json.loads((f.metadata() or {}).get("robust_rl", "{}"))
        if "seed" in meta.get("args", {}):
            return int(meta["args"]["seed"])
    parts = os.path.basename(os.path.normpath(run_dir)).split("__")
    return int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None


def main(args):
    runs = []
    for run_dir in args.runs:
        if not os.path.isdir(run_dir) or not glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
            print(f"error: {run_dir} is not a run folder with TensorBoard events", file=sys.stderr)
            sys.exit(2)
        scalars = read_scalars(run_dir, args.tags)
        curves = {tag: dict(zip(("steps", "values"), thin(s, v, args.points))) for tag, (s, v) in scalars.items()}
        runs.append(dict(run=os.path.basename(os.path.normpath(run_dir)), seed=run_seed(run_dir), curves=curves))
    runs.sort(key=lambda r: (r["seed"] is None, r["seed"], r["run"]))
    label = args.label or os.path.basename(args.out).removesuffix(".json")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(dict(schema="robust-rl/curves/1", label=label, tags=list(args.tags), runs=runs), f)
    os.replace(args.out + ".tmp", args.out)
    print(f"{len(runs)} runs, tags {', '.join(args.tags)} -> {args.out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
