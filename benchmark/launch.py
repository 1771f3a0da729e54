"""Run a grid of training runs (script x env x seed), on this machine (a process pool, one process per core) or on an
existing Ray cluster, and pick each (script, env) median-seed checkpoint for the zoo.

    python benchmark/launch.py --scripts ppo_continuous.py --envs HalfCheetah-v4 Hopper-v4 Walker2d-v4 --seeds 1 2 3
    python benchmark/launch.py --scripts barppo.py --envs Hopper-v4 --seeds 1 2 3 --extra="--kappa 0.3" --jobs 2
    python benchmark/launch.py --scripts barppo.py --envs Hopper-v4 --seeds 1 2 3 4 5 --seeds-per-process 5
    python benchmark/launch.py --engine ray --address 10.0.0.1:6379 --envs Hopper-v4 Walker2d-v4 --seeds 1 2 3 4 5
    python benchmark/launch.py --zoo --scripts ppo_continuous.py --envs HalfCheetah-v4    # copy the median seed to zoo/
    python benchmark/launch.py --collect --scripts barppo.py --envs Hopper-v4 --seeds 1 2 3 4 5 --tag __kappa1.0   # every seed to benchmark/checkpoints/

Each process trains --seeds-per-process consecutive seeds of one (script, env) side by side (`--num-seeds`; default 1:
one process per seed) and writes `benchmark/logs/{script}__{env}__{seed}{tag}.log` (one seed) or
`..._{first}-{last}{tag}.log` (several), and one run folder per seed under `runs/`; each seed's final deterministic
evaluation (`--eval-episodes 50`) is parsed from the log. Re-running the same launch skips a process whose log holds
every seed's final evaluation and continues an interrupted one from its newest checkpoint (`--resume`, the same log):
a stopped session loses at most --save-every iterations of each run.

--engine ray (the optional extra: pip install -e '.[cluster]'; docs/cluster.md): Ray is the scheduler. Each process is
one Ray task (num_cpus=1) that runs the command in a temporary folder on its node with the node's copy of this
repository (shipped as the job's runtime_env working_dir: no shared filesystem), and returns the run folders and the log
to this driver, which writes them where a local run would have (runs/, benchmark/logs/). runs/launch_manifest.json
records each process's command, status, node and attempts: re-running the same launch skips the finished ones. A run
whose worker or node dies, or whose process is killed by a signal, is re-run (--retries); a run that still fails, or
exits non-zero, is reported and the launch exits with status 1.

Moving a grid to another machine (a session that ends, a preempted node): stop it (Ctrl-C or SIGTERM: every training
saves and exits), then `launch.py --park` copies each run folder under runs/ that holds an unfinished or uncollected
training (a checkpoint with its training state that is in neither benchmark/checkpoints/ nor zoo/) to
benchmark/unfinished/, which travels with the repository (commit it). On the other machine every training launch first
puts the parked folders back under runs/ (`--unpark` does only that), so the same grid command continues them.
"""
import glob
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGS = os.path.join(ROOT, "benchmark", "logs")
MANIFEST = "launch_manifest.json"  # in runs/
UNFINISHED = os.path.join("benchmark", "unfinished")  # parked run folders (--park), beside runs/: committed, a grid moves
# what a Ray node does not need of the repository (runs/, wandb/ and .venv are also in .gitignore, which Ray honours)
SHIP_EXCLUDES = [".git", ".venv", "runs", "wandb", "zoo", "benchmark/checkpoints", "benchmark/logs", "benchmark/results", "benchmark/unfinished", "tests",
                 "**/__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", "MUJOCO_LOG.TXT"]


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
    """--engine local: concurrent processes (one per core)"""
    seeds_per_process: int = 1
    """consecutive seeds of one (script, env) trained together in one process (--num-seeds): the cheap way to many seeds"""
    dry_run: bool = False
    """print the commands only"""
    zoo: bool = False
    """do not train: copy each (script, env) median-seed checkpoint to zoo/{script}{tag}__{env}.safetensors"""
    collect: bool = False
    """do not train: copy every finished seed's checkpoint to benchmark/checkpoints/{script}{tag}__{env}__{seed}.safetensors"""
    engine: Literal["local", "ray"] = "local"
    """local: a process pool on this machine (--jobs); ray: one Ray task per process on an existing Ray cluster (--address)"""
    address: str | None = None
    """--engine ray: the cluster's head node, HOST:PORT (what `ray start --head` prints)"""
    retries: int = 2
    """--engine ray: times a process is re-run after its worker or node died or it was killed by a signal"""
    out_dir: str | None = None
    """where runs/ and benchmark/logs/ go (default: this repository); the local engine runs its processes there"""
    park: bool = False
    """do not train: copy every unfinished or uncollected training's run folder from runs/ to benchmark/unfinished/"""
    unpark: bool = False
    """do not train: put the folders of benchmark/unfinished/ back under runs/ (every training launch does this first)"""


def log_path(script, env, seeds, tag, logs=None):
    """The log of one process training `seeds` (consecutive) of (script, env)."""
    name = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    return os.path.join(logs or LOGS, f"{script[:-3]}__{env}__{name}{tag}.log")


def chunks(seeds, size):
    """Runs of at most `size` consecutive seeds (a gap starts a new process: --num-seeds takes seed, seed+1, ...)."""
    out = []
    for seed in seeds:
        if out and len(out[-1]) < size and seed == out[-1][-1] + 1:
            out[-1].append(seed)
        else:
            out.append([seed])
    return out


def find_log(script, env, seed, tag, logs=None, exact=None):
    """(the log of the process that trained seed, the prefix of that seed's lines in it), or (None, None). A
    several-seed log prefixes each seed's lines with `seed K: `. exact: that process's own log, if it exists; else
    the one log whose seed range holds seed (two such logs, e.g. a single-seed run and a later group: an error)."""
    found = []
    for log in sorted(glob.glob(os.path.join(logs or LOGS, f"{script[:-3]}__{env}__*{tag}.log"))):
        m = re.fullmatch(rf"{re.escape(script[:-3])}__{re.escape(env)}__(\d+)(?:-(\d+))?{re.escape(tag)}\.log", os.path.basename(log))
        if m and int(m.group(1)) <= seed <= int(m.group(2) or m.group(1)):
            found.append((log, f"seed {seed}: " if m.group(2) else ""))
    if exact is not None:
        found = [f for f in found if os.path.abspath(f[0]) == os.path.abspath(exact)] or found
    if len(found) > 1:
        names = ", ".join(os.path.basename(f[0]) for f in found)
        sys.exit(f"error: seed {seed} of {script} {env} is in several logs ({names}): give the --seeds-per-process that names its process's log")
    return found[0] if found else (None, None)


def parse(script, env, seed, tag, logs=None, root=None, exact=None):
    """(natural return of seed's final evaluation, its checkpoint path) from the log that trained it (exact: its
    process's own log), or (None, None). The checkpoint path in the log is relative to `root`, where the process ran
    (default: the repository)."""
    log, prefix = find_log(script, env, seed, tag, logs, exact)
    text = open(log).read() if log else ""
    ret = re.search(rf"^{re.escape(prefix or '')}eval: natural return (\S+)", text, re.M)
    ckpt = re.search(rf"^{re.escape(prefix or '')}model saved to (\S+)", text, re.M)
    return (float(ret.group(1)) if ret else None), (os.path.join(root or ROOT, ckpt.group(1)) if ckpt else None)


def flags(env, seeds, extra):
    """The command line of one process after the interpreter and the script."""
    return ["--env-id", env, "--seed", str(seeds[0]), "--num-seeds", str(len(seeds)), "--eval-episodes", "50", *shlex.split(extra)]


def resolved_args(script, env, seeds, extra):
    """(every flag of one process's run as the script resolves it, the script's runtime flags): its own Args and
    resolve_args read the command line of `flags`."""
    import dataclasses
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"launch_{script[:-3]}", os.path.join(ROOT, script))
    module = importlib.util.module_from_spec(spec)
    if ROOT not in sys.path:  # the script imports envs/ (and attacks/) from the repository, as its own run does
        sys.path.insert(0, ROOT)
    spec.loader.exec_module(module)
    return dataclasses.asdict(module.resolve_args(tyro.cli(module.Args, args=flags(env, seeds, extra)))), module.RUNTIME_FLAGS


def resumable(script, env, seeds, extra, out):
    """(the newest checkpoint under out/runs/ of a run of exactly this process, whether that run finished training), or
    (None, False): same script, first seed and seed count, and every flag equal once resolved (the runtime flags
    aside). A run with other flags is left alone."""
    from safetensors import safe_open

    want, runtime = resolved_args(script, env, seeds, extra)
    ignore = set(runtime) | {"resume"}
    same = lambda a, b: (tuple(a) if isinstance(a, list) else a) == (tuple(b) if isinstance(b, list) else b)
    found = []
    for path in glob.glob(os.path.join(out, "runs", f"{env}__{want['exp_name']}__{seeds[0]}__*", f"{want['exp_name']}.safetensors")):
        try:
            with safe_open(path, framework="numpy") as f:
                header = f.metadata() or {}
            meta = json.loads(header["robust_rl"])
        except Exception:
            continue
        if meta.get("script") != script or "resume" not in header:
            continue
        if all(same(meta["args"].get(k), v) for k, v in want.items() if k not in ignore):
            # the checkpoint holds the next iteration to run: past the last one, the run finished training
            found.append((os.path.getmtime(path), path, json.loads(header["resume"]).get("iteration", 0) > want["num_iterations"]))
    return max(found)[1:] if found else (None, False)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def to_park(folder, collected):
    """Whether a run folder holds a training that still needs its folder: a checkpoint with training state (resume/)
    whose bytes are in neither benchmark/checkpoints/ nor zoo/ (a finished run not yet collected counts: --collect
    reads its checkpoint)."""
    from safetensors import safe_open

    ckpts = glob.glob(os.path.join(folder, "*.safetensors"))
    if any(digest(path) in collected for path in ckpts):
        return False
    for path in ckpts:
        try:
            with safe_open(path, framework="numpy") as f:
                if "resume" in (f.metadata() or {}):
                    return True
        except Exception:
            continue
    return False


def copy_folder(src, dst):
    """Copy a folder whole or not at all (times kept: resumable() takes the newest checkpoint)."""
    tmp = dst + ".tmp" + str(os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)


def park(out):
    """out/runs/ -> out/benchmark/unfinished/: every folder that to_park() names; parked copies of folders that have
    since been collected are removed."""
    collected = {digest(p) for pattern in ("benchmark/checkpoints/*.safetensors", "zoo/*.safetensors") for p in glob.glob(os.path.join(ROOT, pattern))}
    store = os.path.join(out, UNFINISHED)
    os.makedirs(store, exist_ok=True)
    parked, removed = [], []
    for folder in sorted(glob.glob(os.path.join(out, "runs", "*", ""))):
        name = os.path.basename(os.path.normpath(folder))
        if to_park(folder, collected):
            copy_folder(folder, os.path.join(store, name))
            parked.append(name)
        elif os.path.isdir(os.path.join(store, name)):
            shutil.rmtree(os.path.join(store, name))
            removed.append(name)
    size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(store, "**"), recursive=True) if os.path.isfile(p))
    for name in parked:
        print(f"parked runs/{name}")
    for name in removed:
        print(f"removed benchmark/unfinished/{name} (collected since)")
    print(f"{len(parked)} run folders parked; benchmark/unfinished/ holds {len(os.listdir(store))} ({size / 1e6:.1f} MB): "
          "commit it (git add -A benchmark/unfinished); on another machine the same grid command continues them")


def unpark(out):
    """out/benchmark/unfinished/ -> out/runs/: each parked folder that runs/ does not have (a folder in runs/ is never
    overwritten)."""
    for folder in sorted(glob.glob(os.path.join(out, UNFINISHED, "*", ""))):
        name = os.path.basename(os.path.normpath(folder))
        if ".tmp" in name or os.path.exists(os.path.join(out, "runs", name)):
            continue
        os.makedirs(os.path.join(out, "runs"), exist_ok=True)
        copy_folder(folder, os.path.join(out, "runs", name))
        print(f"unparked benchmark/unfinished/{name} -> runs/{name}")


# ---- the Ray engine ---------------------------------------------------------------------------------------------------

# `python -c DIE_WITH_PARENT PARENT_PID SCRIPT ARGS` runs SCRIPT ARGS so that it dies with its parent, the Ray worker
# (PR_SET_PDEATHSIG, Linux): a run whose worker is killed never keeps training beside its re-run. (Ray 2.60 kills such
# a process too, but its documentation promises that for a crashed worker only with the opt-in raylet subreaper.)
DIE_WITH_PARENT = """import ctypes, os, sys
if sys.platform == "linux":
    ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
if os.getppid() != int(sys.argv[1]):
    sys.exit(137)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def run_on_node(script, argv):
    """One Ray task (it runs in a Ray worker): run `script argv` in a temporary folder on this node with the node's copy
    of the repository (the job's working_dir, which Ray makes the worker's cwd), and return what the run wrote (runs/,
    wandb/) as an in-memory tar.gz, its log, its exit status and where it ran. A run killed by a signal raises, so
    that Ray re-runs it (retry_exceptions)."""
    import ray

    code = os.getcwd()
    ctx = ray.get_runtime_context()
    try:  # which attempt Ray is making (0 first): the core worker knows it, the public runtime context does not say
        attempt = ray._private.worker.global_worker.core_worker.get_current_task_attempt_number()
    except Exception:
        attempt = None
    where = {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname(), "attempt": attempt}
    cmd = [sys.executable, os.path.join(code, script), *argv]
    start = time.time()
    # in the node's Ray temp dir: the folder of an attempt whose worker was killed stays there, not in /tmp
    with tempfile.TemporaryDirectory(prefix="robust-rl-run-", dir=ctx.get_temp_dir()) as tmp:
        with open(os.path.join(tmp, "run.log"), "w+b") as log:
            pythonpath = os.environ.get("PYTHONPATH")
            env = dict(os.environ, PYTHONPATH=code + (os.pathsep + pythonpath if pythonpath else ""))
            proc = subprocess.run([sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), *cmd[1:]], cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
            log.seek(0)
            text = log.read().decode(errors="replace")
        if proc.returncode < 0:
            tail = "\n".join(text.splitlines()[-5:])
            raise RuntimeError(f"{shlex.join([script, *argv])} was killed by signal {-proc.returncode} on {where['hostname']}:\n{tail}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name in ("runs", "wandb"):
                if os.path.isdir(os.path.join(tmp, name)):
                    tar.add(os.path.join(tmp, name), arcname=name)
        run_dirs = sorted(os.listdir(os.path.join(tmp, "runs"))) if os.path.isdir(os.path.join(tmp, "runs")) else []
    return dict(where, cmd=cmd, exit=proc.returncode, log=text, files=buf.getvalue(), run_dirs=run_dirs, seconds=round(time.time() - start, 1))


def unpack(files, out):
    """Write a task's tar.gz (runs/..., wandb/...) under `out`, refusing anything else."""
    with tarfile.open(fileobj=io.BytesIO(files), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.name.split("/")[0] not in ("runs", "wandb") or os.path.isabs(member.name) or ".." in member.name.split("/"):
                raise ValueError(f"unexpected path in a returned run: {member.name}")
        tar.extractall(out, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def load_manifest(path):
    if not os.path.exists(path):
        return {"runs": {}}
    with open(path) as f:
        return json.load(f)


def save_manifest(path, manifest):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def run_ray(args, runs, out, logs):
    """Run each process of the grid as a Ray task on the cluster at args.address; write what comes back under `out`.
    Returns the manifest entries of this grid's processes."""
    manifest_path = os.path.join(out, "runs", MANIFEST)
    manifest = load_manifest(manifest_path)
    todo, keys = [], []
    for script, env, seeds in runs:
        key = os.path.basename(log_path(script, env, seeds, args.tag, logs))[: -len(".log")]
        argv = flags(env, seeds, args.extra)
        command = shlex.join([script, *argv])
        entry = manifest["runs"].get(key)
        if entry and entry.get("status") == "done" and entry.get("command") == command:
            print(f"{script} {env} seeds {seeds}: done in an earlier launch (on {entry.get('hostname')}), skipped")
        else:
            todo.append((script, env, seeds, key, argv, command))
        keys.append(key)
    if not todo:
        print(f"nothing to run: every process of this grid is done ({os.path.relpath(manifest_path)})")
        return {key: manifest["runs"][key] for key in keys}
    try:
        import ray
    except ImportError:
        sys.exit("error: --engine ray needs Ray, the optional extra: pip install -e '.[cluster]' (or pip install -r requirements-cluster.lock)")
    if not ray.is_initialized():
        try:
            ray.init(address=args.address, runtime_env={"working_dir": ROOT, "excludes": SHIP_EXCLUDES}, log_to_driver=False, logging_level="ERROR")
        except Exception as e:  # ConnectionError, a timeout, a version mismatch, ...
            sys.exit(f"error: cannot use the Ray cluster at {args.address}: {type(e).__name__}: {e}")
    if __name__ != "__main__":  # imported (tests): ship this module's functions by value, the nodes cannot import it
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    nodes = [n for n in ray.nodes() if n["Alive"]]
    print(f"ray cluster at {args.address}: {len(nodes)} nodes, {sum(n['Resources'].get('CPU', 0) for n in nodes):g} CPUs; "
          f"{len(todo)} processes to run, {len(runs) - len(todo)} done before", flush=True)
    task = ray.remote(num_cpus=1, max_retries=args.retries, retry_exceptions=True)(run_on_node)
    pending = {}
    for script, env, seeds, key, argv, command in todo:
        pending[task.remote(script, argv)] = (script, env, seeds, key)
        manifest["runs"][key] = {"command": command, "status": "submitted", "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")}
    save_manifest(manifest_path, manifest)
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            script, env, seeds, key = pending.pop(ref)
            entry = manifest["runs"][key]
            try:
                res = ray.get(ref)
            except ray.exceptions.RayError as e:
                # each attempt's process was killed by a signal (the task raised), or its worker or node died; other errors do not say
                attempts = args.retries + 1 if isinstance(e, (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)) else None
                error = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
                entry.update(status="failed", attempts=attempts, error=f"{type(e).__name__}: " + " | ".join(error[-3:]))
                with open(os.path.join(logs, key + ".log"), "w") as f:
                    f.write(f"# {entry['command']}\n# failed on the Ray cluster (attempts: {attempts}): {entry['error']}\n")
                print(f"{script} {env} seeds {seeds}: FAILED (attempts: {attempts}): {entry['error']}", flush=True)
            else:
                unpack(res["files"], out)
                with open(os.path.join(logs, key + ".log"), "w") as f:
                    f.write(f"# {shlex.join(res['cmd'])}\n{res['log']}")
                entry.update(status="done" if res["exit"] == 0 else "failed", exit=res["exit"], node_id=res["node_id"], node_ip=res["node_ip"],
                             hostname=res["hostname"], attempts=None if res["attempt"] is None else res["attempt"] + 1, seconds=res["seconds"],
                             run_dirs=[f"runs/{d}" for d in res["run_dirs"]], log=os.path.relpath(os.path.join(logs, key + ".log"), out),
                             natural_returns=[parse(script, env, seed, args.tag, logs, out)[0] for seed in seeds])
                print(f"{script} {env} seeds {seeds}: exit {res['exit']} on {res['hostname']} (node {res['node_id'][:8]}, attempt {entry['attempts']}, "
                      f"{res['seconds']:.0f} s), natural returns {entry['natural_returns']}", flush=True)
            save_manifest(manifest_path, manifest)
    except KeyboardInterrupt:
        sys.exit(f"interrupted: {len(pending)} processes unfinished; the same command resumes ({os.path.relpath(manifest_path)})")
    return {key: manifest["runs"][key] for key in keys}


def main(args):
    out = os.path.abspath(args.out_dir) if args.out_dir else ROOT
    logs = os.path.join(out, "benchmark", "logs") if args.out_dir else LOGS
    os.makedirs(logs, exist_ok=True)
    if args.extra and not args.tag:
        sys.exit("error: --extra needs a --tag, so that runs with other flags do not share log names")
    if args.seeds_per_process <= 0 or args.jobs <= 0:
        sys.exit("error: --seeds-per-process and --jobs must be positive")
    if args.engine == "ray" and not args.zoo and not args.dry_run and (not args.address or args.retries < 0):
        sys.exit("error: --engine ray needs --address HOST:PORT (the head node of a running Ray cluster) and --retries >= 0")
    runs = [(s, e, group) for s in args.scripts for e in args.envs for group in chunks(sorted(set(args.seeds)), args.seeds_per_process)]
    if args.park or args.unpark:
        park(out) if args.park else unpark(out)
        return
    if args.collect:
        folder = os.path.join(ROOT, "benchmark", "checkpoints")
        os.makedirs(folder, exist_ok=True)
        missing = []
        for script, env, group in runs:
            for seed in group:
                ret, ckpt = parse(script, env, seed, args.tag, logs, out, exact=log_path(script, env, group, args.tag, logs))
                dst = os.path.join(folder, f"{script[:-3]}{args.tag}__{env}__{seed}.safetensors")
                if ret is not None and ckpt is not None and not os.path.exists(ckpt) and os.path.exists(dst):
                    # a finished run collected on another machine (its run folder stayed there): the copy is the record
                    print(f"{script} {env} seed {seed} ({ret:.0f}): {os.path.relpath(dst, ROOT)} (collected earlier)")
                    continue
                if ckpt is None or not os.path.exists(ckpt):
                    missing.append(f"{script} {env} seed {seed}")
                    continue
                shutil.copyfile(ckpt, dst + ".tmp")
                os.replace(dst + ".tmp", dst)
                print(f"{script} {env} seed {seed} ({'no closing evaluation' if ret is None else f'{ret:.0f}'}) -> {os.path.relpath(dst, ROOT)}")
        if missing:
            sys.exit(f"error: no finished run of {', '.join(missing)}")
        return
    if args.zoo:
        os.makedirs(os.path.join(ROOT, "zoo"), exist_ok=True)
        for script in args.scripts:
            for env in args.envs:
                done = [(parse(script, env, seed, args.tag, logs, out, exact=log_path(script, env, group, args.tag, logs)), seed)
                        for s_, e_, group in runs if (s_, e_) == (script, env) for seed in group]
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

    if args.engine == "ray" and not args.dry_run:
        entries = run_ray(args, runs, out, logs)
        failed = [key for key, entry in entries.items() if entry["status"] != "done"]
        print(f"{len(entries) - len(failed)}/{len(entries)} processes done" + (f"; failed: {' '.join(failed)}" if failed else ""))
        sys.exit(1 if failed else 0)

    def one(run):
        script, env, seeds = run
        cmd = [sys.executable, os.path.join(ROOT, script), *flags(env, seeds, args.extra)]
        if args.dry_run:
            print(shlex.join(cmd))
            return 0
        log = log_path(script, env, seeds, args.tag, logs)
        if os.path.exists(log) and all(parse(script, env, seed, args.tag, logs, out, exact=log)[0] is not None for seed in seeds):
            print(f"{script} {env} seeds {seeds}: finished earlier ({os.path.relpath(log, out)}), skipped")
            return 0
        ckpt, finished = resumable(script, env, seeds, args.extra, out)
        if finished:  # trained to the end, but the process died in its closing evaluation: do not train it again
            print(f"{script} {env} seeds {seeds}: trained to the end ({os.path.relpath(ckpt, out)}) but its log has no closing "
                  "evaluation; skipped (evaluate the checkpoints with eval_attacks.py; delete the run folders to train again)")
            return 0
        if ckpt:  # an interrupted run of this very process: continue it, appending to its log
            cmd = [sys.executable, os.path.join(ROOT, script), "--resume", os.path.relpath(ckpt, out), *flags(env, seeds, args.extra)]
            print(f"{script} {env} seeds {seeds}: resuming {os.path.relpath(ckpt, out)}")
        with open(log, "a" if ckpt and os.path.exists(log) else "w") as f:
            f.write(f"# {shlex.join(cmd)}\n")
            f.flush()
            return subprocess.run(cmd, cwd=out, stdout=f, stderr=subprocess.STDOUT).returncode

    if not args.dry_run:
        unpark(out)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        codes = list(pool.map(one, runs))
    if args.dry_run:
        return
    for (script, env, seeds), code in zip(runs, codes):
        log = log_path(script, env, seeds, args.tag, logs)
        print(f"{script} {env} seeds {seeds}: exit {code}, natural returns {[parse(script, env, seed, args.tag, logs, out, exact=log)[0] for seed in seeds]}")
    sys.exit(1 if any(codes) else 0)  # a killed run has a negative code


if __name__ == "__main__":
    main(tyro.cli(Args))
