"""benchmark/launch.py --engine ray on a real two-node Ray cluster on loopback: two `ray start` processes (a head and a
second node, one CPU each), a 4-run tiny grid. The runs land on both nodes, their folders and logs come back to the
driver's --out-dir, a run whose Ray worker is killed is re-run (attempts 2 in the manifest), a second launch skips the
finished runs, a failing run is an exit status, and the cluster is stopped at the end (even when a test fails).

Needs the optional extra (pip install -r requirements-cluster.lock; CI installs it); skipped without Ray."""
import ctypes
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "benchmark", "launch.py")
RAY = os.path.join(os.path.dirname(sys.executable), "ray")  # the venv's: every node runs the driver's Python

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("ray") is None or not os.path.exists(RAY),
                                 reason="Ray is not installed (the optional extra: pip install -r requirements-cluster.lock)"),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the test finds and kills processes through /proc")]

TAG = "__raytest"
GRID = ["--scripts", "ppo_continuous.py", "--envs", "Hopper-v4", "--seeds", "1", "2", "3", "4", "--tag", TAG,
        "--extra=--total-timesteps 1024 --num-steps 512 --update-epochs 1 --eval-episodes 1"]
KILLED_SEED = "3"  # the grid kills the Ray worker of its first attempt


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def ray_env():
    return dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONWARNINGS="ignore")


def die_with_pytest():
    """preexec_fn: SIGTERM the node when this pytest process dies, even by SIGKILL (PR_SET_PDEATHSIG): no cluster outlives
    a killed test run."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def start_node(args, log_path, timeout=120):
    """`ray start --block ARGS` in its own session (so it and everything it starts can be stopped by its process group);
    returns the Popen once the node is up."""
    log = open(log_path, "w")
    proc = subprocess.Popen([RAY, "start", "--block", "--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats", *args],
                            stdout=log, stderr=subprocess.STDOUT, env=ray_env(), start_new_session=True, preexec_fn=die_with_pytest)
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log_path) as f:
            text = f.read()
        if "Ray runtime started" in text:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    stop_node(proc)
    raise RuntimeError(f"ray start did not come up (exit {proc.poll()}):\n{text[-3000:]}")


def stop_node(proc, grace=30):
    """SIGTERM the `ray start --block` process we started (it stops its node), then SIGKILL what is left of its process
    group. Nothing but this node's processes is touched (not `ray stop`, which stops every Ray on the machine)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def group_members(pgid):
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(pid))
    return out


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def wait_gone(pid, timeout=10):
    """Seconds until process pid is gone (or a zombie), None if it is still running after timeout."""
    start = time.time()
    while time.time() - start < timeout:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return time.time() - start
        except OSError:
            return time.time() - start
        time.sleep(0.05)
    return None


@pytest.fixture(scope="module")
def cluster():
    """A head node and a second node on this machine, one CPU each, each with its own temp dir and ports. (Ray registers
    both under the machine's address, not 127.0.0.1: it resolves loopback to a reachable IP.)"""
    tmp = tempfile.mkdtemp(prefix="rr", dir="/tmp" if os.path.isdir("/tmp") else None)  # short: Ray's unix socket paths live under it
    p = free_ports(14)
    nodes = []
    try:
        nodes.append(start_node(["--head", f"--port={p[0]}", "--include-dashboard=false",
                                 f"--dashboard-port={p[1]}", f"--ray-client-server-port={p[2]}", f"--temp-dir={tmp}/head",
                                 f"--node-manager-port={p[3]}", f"--object-manager-port={p[4]}", f"--dashboard-agent-listen-port={p[5]}",
                                 f"--dashboard-agent-grpc-port={p[6]}", f"--runtime-env-agent-port={p[7]}", f"--metrics-export-port={p[8]}"],
                                os.path.join(tmp, "head.log")))
        nodes.append(start_node([f"--address=127.0.0.1:{p[0]}", f"--temp-dir={tmp}/node2",
                                 "--include-log-monitor=false", f"--node-manager-port={p[9]}", f"--object-manager-port={p[10]}",
                                 f"--dashboard-agent-listen-port={p[11]}", f"--dashboard-agent-grpc-port={p[12]}", f"--runtime-env-agent-port={p[13]}"],
                                os.path.join(tmp, "node2.log")))
        yield {"address": f"127.0.0.1:{p[0]}", "tmp": tmp}
    finally:
        for proc in reversed(nodes):
            stop_node(proc)
        left = {proc.pid: group_members(proc.pid) for proc in nodes}
        shutil.rmtree(tmp, ignore_errors=True)
        assert not any(left.values()), f"Ray processes left after stopping the cluster: {left}"


def launch(cluster, out, *args, kill=None, timeout=300):
    """Run launch.py --engine ray; kill = {seed: "worker" | "run"} SIGKILLs, from outside and once per seed, the Ray worker
    running that seed's first attempt, or the run's own process. Returns (exit status, output, {seed: killed pids})."""
    cmd = [sys.executable, LAUNCH, "--engine", "ray", "--address", cluster["address"], "--out-dir", str(out), *args]
    log = tempfile.TemporaryFile("w+")  # not a pipe: nobody reads it while the loop below watches the runs
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=ray_env())
    todo, killed, deadline = dict(kill or {}), {}, time.time() + timeout
    try:
        while todo and proc.poll() is None:
            assert time.time() < deadline, f"launch.py took more than {timeout} s"
            for pid in filter(str.isdigit, os.listdir("/proc")):
                argv = cmdline(pid)
                # a run's process: its script is the node's copy of the repository, under the cluster's temp dir
                if len(argv) > 2 and argv[1].startswith(cluster["tmp"]) and "--seed" in argv and argv[argv.index("--seed") + 1] in todo:
                    seed = argv[argv.index("--seed") + 1]
                    with open(f"/proc/{pid}/stat") as f:
                        worker = int(f.read().rsplit(")", 1)[1].split()[1])
                    assert (cmdline(worker) or [""])[0].startswith("ray::"), cmdline(worker)  # its parent is a Ray worker
                    what = todo.pop(seed)
                    os.kill(worker if what == "worker" else int(pid), signal.SIGKILL)
                    killed[seed] = {"run": int(pid), "worker": worker, "run_gone_after": wait_gone(int(pid))}
            time.sleep(0.1)
        proc.wait(timeout=max(deadline - time.time(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        output = log.read()
        log.close()
    assert not todo, f"never saw these runs to kill: {todo}\n{output[-3000:]}"
    return proc.returncode, output, killed


def manifest(out):
    with open(os.path.join(out, "runs", "launch_manifest.json")) as f:
        return json.load(f)["runs"]


@pytest.fixture(scope="module")
def grid(cluster, tmp_path_factory):
    """The 4-run grid, launched once: seed 3's first attempt loses its Ray worker, seed 4's first attempt its process."""
    out = tmp_path_factory.mktemp("ray_out")
    start = time.time()
    code, output, killed = launch(cluster, out, "--retries", "2", *GRID, kill={"3": "worker", "4": "run"})
    return {"out": out, "exit": code, "output": output, "manifest": manifest(out), "killed": killed, "seconds": time.time() - start}


def test_results_came_back(grid):
    assert grid["exit"] == 0, grid["output"][-3000:]
    assert sorted(grid["manifest"]) == [f"ppo_continuous__Hopper-v4__{seed}{TAG}" for seed in (1, 2, 3, 4)]
    for key, entry in grid["manifest"].items():
        assert entry["status"] == "done" and entry["exit"] == 0, entry
        assert entry["command"].startswith("ppo_continuous.py --env-id Hopper-v4 --seed ")
        (run_dir,) = entry["run_dirs"]
        files = os.listdir(grid["out"] / run_dir)
        assert "ppo_continuous.safetensors" in files and any(f.startswith("events.out.tfevents") for f in files), files
        log = (grid["out"] / entry["log"]).read_text()
        assert f"model saved to {run_dir}/ppo_continuous.safetensors" in log and "eval: natural return" in log, log[-2000:]
        assert len(entry["natural_returns"]) == 1 and entry["natural_returns"][0] is not None
    assert "4/4 processes done" in grid["output"]


def test_runs_landed_on_both_nodes(grid):
    assert len({entry["node_id"] for entry in grid["manifest"].values()}) == 2, grid["manifest"]


def test_killed_runs_are_retried(grid):
    attempts = {key.split("__")[2]: entry["attempts"] for key, entry in grid["manifest"].items()}
    assert attempts == {"1": 1, "2": 1, "3": 2, "4": 2}, (attempts, grid["output"][-3000:])
    # the process of seed 3's first attempt died with its worker: no orphan kept training beside the retry
    assert grid["killed"][KILLED_SEED]["run_gone_after"] is not None, grid["killed"]


def test_a_second_launch_skips_the_finished_runs(grid, cluster):
    code, output, _ = launch(cluster, grid["out"], "--retries", "2", *GRID)
    assert code == 0, output[-3000:]
    assert output.count("done in an earlier launch") == 4 and "nothing to run" in output, output
    assert manifest(grid["out"]) == grid["manifest"]


def test_a_failing_run_is_an_exit_status(grid, cluster):
    code, output, _ = launch(cluster, grid["out"], "--scripts", "ppo_continuous.py", "--envs", "NoSuchEnv-v0", "--seeds", "1")
    assert code == 1, output[-3000:]
    assert "0/1 processes done; failed: ppo_continuous__NoSuchEnv-v0__1" in output, output
    entry = manifest(grid["out"])["ppo_continuous__NoSuchEnv-v0__1"]
    assert entry["status"] == "failed" and entry["exit"] == 2 and entry["attempts"] == 1, entry  # bad input: reported, not re-run


def test_a_run_that_fails_every_attempt_is_reported(grid, cluster):
    code, output, _ = launch(cluster, grid["out"], "--retries", "0", "--scripts", "ppo_continuous.py", "--envs", "Hopper-v4", "--seeds", "9",
                              "--tag", TAG, GRID[-1], kill={"9": "worker"})
    assert code == 1, output[-3000:]
    assert f"failed: ppo_continuous__Hopper-v4__9{TAG}" in output, output
    entry = manifest(grid["out"])[f"ppo_continuous__Hopper-v4__9{TAG}"]
    assert entry["status"] == "failed" and entry["attempts"] == 1 and "WorkerCrashedError" in entry["error"], entry
