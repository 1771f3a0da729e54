"""benchmark/launch.py: seeds grouped into processes (--seeds-per-process), each seed's result found in its log, and the parts of
the Ray engine that need no cluster (tests/test_launch_ray.py runs one)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmark"))
import launch  # noqa: E402


def test_chunks_are_runs_of_consecutive_seeds():
    assert launch.chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert launch.chunks([1, 2, 3, 7, 8, 10], 5) == [[1, 2, 3], [7, 8], [10]]  # --num-seeds needs seed, seed+1, ...
    assert launch.chunks([4, 5, 6], 1) == [[4], [5], [6]]


def test_dry_run_commands(capsys):
    launch.main(launch.Args(scripts=("barppo.py",), envs=("Hopper-v4",), seeds=(1, 2, 3, 4, 5), seeds_per_process=3, dry_run=True))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("--seed 1 --num-seeds 3 --eval-episodes 50") and "--seed 4 --num-seeds 2" in lines[1]


def test_each_seed_is_parsed_from_its_own_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "LOGS", str(tmp_path))
    (tmp_path / "ppo_continuous__Hopper-v4__1-3__k1.log").write_text(
        "seed 1: model saved to runs/a/ppo_continuous.safetensors\nseed 2: model saved to runs/b/ppo_continuous.safetensors\n"
        "seed 3: model saved to runs/c/ppo_continuous.safetensors\nseed 1: eval: natural return 100.5 +- 1\n"
        "seed 2: eval: natural return 200.5 +- 1\nseed 3: eval: natural return 300.5 +- 1\n")
    (tmp_path / "ppo_continuous__Hopper-v4__4__k1.log").write_text("model saved to runs/d/ppo_continuous.safetensors\neval: natural return 400.0 +- 2\n")
    assert launch.parse("ppo_continuous.py", "Hopper-v4", 2, "__k1") == (200.5, os.path.join(launch.ROOT, "runs/b/ppo_continuous.safetensors"))
    assert launch.parse("ppo_continuous.py", "Hopper-v4", 4, "__k1")[0] == 400.0
    assert launch.parse("ppo_continuous.py", "Hopper-v4", 5, "__k1") == (None, None)
    assert launch.parse("ppo_continuous.py", "Hopper-v4", 2, "") == (None, None)  # another tag


def test_bad_grouping_is_refused():
    with pytest.raises(SystemExit, match="--seeds-per-process"):
        launch.main(launch.Args(seeds_per_process=0, dry_run=True))


def test_ray_engine_needs_an_address():
    with pytest.raises(SystemExit, match="--address"):
        launch.main(launch.Args(engine="ray"))


def test_ray_relaunch_skips_what_the_manifest_says_is_done(tmp_path, capsys):
    """No cluster needed: when every process of the grid is done with the same command, nothing is submitted."""
    runs = {f"ppo_continuous__Hopper-v4__{seed}": {"command": f"ppo_continuous.py --env-id Hopper-v4 --seed {seed} --num-seeds 1 --eval-episodes 50",
                                                    "status": "done", "hostname": "node-a"} for seed in (1, 2)}
    launch.save_manifest(str(tmp_path / "runs" / launch.MANIFEST), {"runs": runs})
    with pytest.raises(SystemExit) as e:
        launch.main(launch.Args(envs=("Hopper-v4",), seeds=(1, 2), engine="ray", address="unused:1", out_dir=str(tmp_path)))
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.count("done in an earlier launch (on node-a), skipped") == 2 and "2/2 processes done" in out, out


def test_a_returned_run_cannot_write_outside_runs(tmp_path):
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("runs/../../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="unexpected path"):
        launch.unpack(buf.getvalue(), str(tmp_path))


def test_a_relaunch_resumes_an_interrupted_run_and_skips_a_finished_one(tmp_path, capsys):
    """The local engine: the same launch continues a process that was interrupted (its run folders, its log), leaves a
    run with other flags alone, and skips a process whose log holds every seed's final evaluation."""
    import signal
    import subprocess

    extra = "--total-timesteps 3072 --num-steps 512 --num-minibatches 8 --update-epochs 2 --progress False --save-every 0"
    args = launch.Args(scripts=("ppo_continuous.py",), envs=("Hopper-v4",), seeds=(1, 2), seeds_per_process=2, extra=extra, tag="__t",
                       out_dir=str(tmp_path))
    cmd = [sys.executable, os.path.join(launch.ROOT, "ppo_continuous.py"), *launch.flags("Hopper-v4", [1, 2], extra)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("iter 2/6"):
            proc.send_signal(signal.SIGINT)
            break
    proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGINT
    folders = sorted(os.listdir(tmp_path / "runs"))
    assert len(folders) == 2
    assert launch.resumable("ppo_continuous.py", "Hopper-v4", [1, 2], extra + " --learning-rate 1e-4", str(tmp_path)) == (None, False)
    ckpt, finished = launch.resumable("ppo_continuous.py", "Hopper-v4", [1, 2], extra, str(tmp_path))
    assert ckpt.endswith("ppo_continuous.safetensors") and not finished
    # as a user runs it: a process of its own, without the repository on PYTHONPATH (the script's imports must resolve)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    relaunch = subprocess.run([sys.executable, os.path.join(launch.ROOT, "benchmark", "launch.py"), "--scripts", "ppo_continuous.py", "--envs",
                               "Hopper-v4", "--seeds", "1", "2", "--seeds-per-process", "2", f"--extra={extra}", "--tag", "__t", "--out-dir", str(tmp_path)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert relaunch.returncode == 0, relaunch.stderr[-3000:]
    assert "resuming runs/" in relaunch.stdout
    assert sorted(os.listdir(tmp_path / "runs")) == folders  # continued in place: no new run folder
    log = (tmp_path / "benchmark" / "logs" / "ppo_continuous__Hopper-v4__1-2__t.log").read_text()
    assert "resumed runs/" in log and "seed 1: eval: natural return" in log and "seed 2: eval: natural return" in log
    assert launch.resumable("ppo_continuous.py", "Hopper-v4", [1, 2], extra, str(tmp_path)) == (ckpt, True)  # finished
    with pytest.raises(SystemExit):
        launch.main(args)
    assert "finished earlier" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "runs")) == folders


def test_collect_copies_every_finished_seed_and_names_the_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "ROOT", str(tmp_path))
    logs = tmp_path / "benchmark" / "logs"
    logs.mkdir(parents=True)
    for seed in (1, 2):
        (tmp_path / "runs" / f"r{seed}").mkdir(parents=True)
        (tmp_path / "runs" / f"r{seed}" / "barppo.safetensors").write_bytes(bytes([seed]))
    (logs / "barppo__Hopper-v4__1-3__kappa1.0.log").write_text(
        "seed 1: model saved to runs/r1/barppo.safetensors\nseed 2: model saved to runs/r2/barppo.safetensors\n"
        "seed 1: eval: natural return 10.0 +- 1\nseed 2: eval: natural return 20.0 +- 1\n")  # seed 3 never finished
    (tmp_path / "runs" / "old").mkdir()
    (tmp_path / "runs" / "old" / "barppo.safetensors").write_bytes(b"old")
    (logs / "barppo__Hopper-v4__1__kappa1.0.log").write_text("model saved to runs/old/barppo.safetensors\neval: natural return 5.0 +- 1\n")
    args = launch.Args(scripts=("barppo.py",), envs=("Hopper-v4",), seeds=(1, 2, 3), seeds_per_process=3, tag="__kappa1.0", collect=True,
                       out_dir=str(tmp_path))
    with pytest.raises(SystemExit, match="no finished run of barppo.py Hopper-v4 seed 3"):
        launch.main(args)
    for seed in (1, 2):  # the group's own log, not the older single-seed run's
        assert (tmp_path / "benchmark" / "checkpoints" / f"barppo__kappa1.0__Hopper-v4__{seed}.safetensors").read_bytes() == bytes([seed])
    launch.main(launch.Args(scripts=("barppo.py",), envs=("Hopper-v4",), seeds=(1,), tag="__kappa1.0", collect=True, out_dir=str(tmp_path)))
    assert (tmp_path / "benchmark" / "checkpoints" / "barppo__kappa1.0__Hopper-v4__1.safetensors").read_bytes() == b"old"  # its own log
    with pytest.raises(SystemExit, match="seed 1 of barppo.py Hopper-v4 is in several logs"):  # no log named 1-2: not guessed
        launch.main(launch.Args(scripts=("barppo.py",), envs=("Hopper-v4",), seeds=(1, 2), seeds_per_process=2, tag="__kappa1.0", collect=True,
                                out_dir=str(tmp_path)))


@pytest.mark.parametrize("script,argv,message", [
    ("trainers.sh", ["Hopper-v4", "2", "ppo-0.3"], "error: unknown configuration 'ppo-0.3'"),
    ("trainers.sh", ["Hopper-v4", "2", "sappo-nog"], "error: unknown configuration 'sappo-nog'"),
    ("pruning.sh", ["sweep", "Hopper-v4", "2"], "error: unknown part 'sweep'"),
    ("pruning.sh", ["strong", "Nope-v4", "2"], "error: no dense (`none`) pruning result for Nope-v4"),
    ("prmdp.sh", [], "usage: prmdp.sh ENV_ID"),
    ("sumo.sh", ["frog"], "usage: sumo.sh [puck|ant]"),
])
def test_grid_scripts_parse_and_refuse_bad_input(script, argv, message):
    import subprocess

    path = os.path.join(launch.ROOT, "benchmark", "grids", script)
    assert subprocess.run(["bash", "-n", path]).returncode == 0
    proc = subprocess.run(["bash", path, *argv], capture_output=True, text=True, timeout=60, env={**os.environ, "PY": sys.executable})
    assert proc.returncode != 0 and message in proc.stderr and "launch.py" not in proc.stdout and "Traceback" not in proc.stderr


def test_a_checkpoint_holding_the_last_iteration_still_resumes(tmp_path):
    """The checkpoint stores the next iteration to run: equal to the number of iterations, one is left to train;
    past it, the run finished (then the relaunch must not train it again)."""
    import json

    import torch
    from safetensors.torch import save_file

    extra = "--total-timesteps 3072 --num-steps 512"
    args, _ = launch.resolved_args("ppo_continuous.py", "Hopper-v4", [1], extra)
    assert args["num_iterations"] == 6
    folder = tmp_path / "runs" / "Hopper-v4__ppo_continuous__1__1_x"
    folder.mkdir(parents=True)
    for iteration, finished in ((6, False), (7, True)):
        meta = {"script": "ppo_continuous.py", "args": args}
        save_file({"x": torch.zeros(1)}, str(folder / "ppo_continuous.safetensors"),
                  metadata={"robust_rl": json.dumps(meta), "resume": json.dumps({"iteration": iteration})})
        assert launch.resumable("ppo_continuous.py", "Hopper-v4", [1], extra, str(tmp_path)) == (str(folder / "ppo_continuous.safetensors"), finished)


def test_a_parked_grid_continues_on_another_machine(tmp_path, monkeypatch, capsys):
    """--park on machine A (an interrupted 2-seed process), only the committed files carried to machine B (logs and
    benchmark/unfinished/, no runs/): the same launch there resumes the parked run in place and ends with the weights of
    an uninterrupted run; --collect takes it; the next --park removes the parked copy; a second launch skips it."""
    import shutil
    import signal
    import subprocess

    from safetensors.torch import load_file

    extra = "--total-timesteps 3072 --num-steps 512 --num-minibatches 8 --update-epochs 2 --progress False --save-every 0"
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (a, b, c):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    launch_cmd = [sys.executable, os.path.join(launch.ROOT, "benchmark", "launch.py"), "--scripts", "ppo_continuous.py", "--envs", "Hopper-v4",
                  "--seeds", "1", "2", "--seeds-per-process", "2", f"--extra={extra}", "--tag", "__t"]
    cmd = [sys.executable, os.path.join(launch.ROOT, "ppo_continuous.py"), *launch.flags("Hopper-v4", [1, 2], extra)]
    (a / "benchmark" / "logs").mkdir(parents=True)
    with open(a / "benchmark" / "logs" / "ppo_continuous__Hopper-v4__1-2__t.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stdout:
            log.write(line)
            if line.startswith("iter 2/6"):
                proc.send_signal(signal.SIGTERM)
                break
        proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM
    (a / "runs" / "scratch").mkdir()  # a folder with no training state: not parked
    monkeypatch.setattr(launch, "ROOT", str(a))
    launch.main(launch.Args(park=True, out_dir=str(a)))
    folders = sorted(os.listdir(a / "runs"))
    parked = sorted(os.listdir(a / "benchmark" / "unfinished"))
    assert parked == [f for f in folders if f != "scratch"] and len(parked) == 2
    assert "2 run folders parked" in capsys.readouterr().out

    shutil.copytree(a / "benchmark", b / "benchmark")  # what a commit carries: no runs/
    relaunch = subprocess.run([*launch_cmd, "--out-dir", str(b)], cwd=b, env=env, capture_output=True, text=True, timeout=300)
    assert relaunch.returncode == 0, relaunch.stderr[-3000:]
    assert "unparked benchmark/unfinished/" in relaunch.stdout and "resuming runs/" in relaunch.stdout
    assert sorted(os.listdir(b / "runs")) == parked  # continued in place
    done = subprocess.run([*launch_cmd, "--out-dir", str(c)], cwd=c, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for seed, folder in zip((1, 2), parked):
        resumed = load_file(str(b / "runs" / folder / "ppo_continuous.safetensors"))
        (straight,) = (c / "runs").glob(f"Hopper-v4__ppo_continuous__{seed}__*/ppo_continuous.safetensors")
        straight = load_file(str(straight))
        assert resumed.keys() == straight.keys() and all(resumed[k].equal(straight[k]) for k in resumed)

    monkeypatch.setattr(launch, "ROOT", str(b))
    launch.main(launch.Args(park=True, out_dir=str(b)))  # finished but not collected: still needed (--collect reads it)
    assert sorted(os.listdir(b / "benchmark" / "unfinished")) == parked
    launch.main(launch.Args(scripts=("ppo_continuous.py",), envs=("Hopper-v4",), seeds=(1, 2), seeds_per_process=2, tag="__t", collect=True,
                            out_dir=str(b)))
    launch.main(launch.Args(park=True, out_dir=str(b)))
    assert os.listdir(b / "benchmark" / "unfinished") == []
    assert capsys.readouterr().out.count("(collected since)") == 2
    shutil.rmtree(b / "runs")  # a third machine: the collected copies stand for the run folders
    launch.main(launch.Args(scripts=("ppo_continuous.py",), envs=("Hopper-v4",), seeds=(1, 2), seeds_per_process=2, tag="__t", collect=True,
                            out_dir=str(b)))
    assert capsys.readouterr().out.count("(collected earlier)") == 2


STUB = r'''
import os, sys, time
record = os.environ["STUB_RECORD"]
def log(what):
    with open(record, "a") as f:
        f.write(f"{what} {os.getppid()} {time.time():.6f}\n")
script, args = sys.argv[1], sys.argv[2:]
if script.endswith("launch.py"):
    sys.exit(0)
time.sleep(0.4)
if script == "two_timescale_adv.py":
    exp = args[args.index("--exp-name") + 1]
    log(f"train {exp} start")
    time.sleep(0.4)
    for seed in (1, 2, 3):
        folder = f"runs/sumo-puck__{exp}__{seed}__1_x"
        os.makedirs(folder, exist_ok=True)
        for name in ("benign", exp):
            open(f"{folder}/{name}.safetensors", "w").write(f"{exp} {seed}")
        how = "saved to" if exp == "phase1" else "from"
        print(f"seed {seed}: benign policy {how} {folder}/benign.safetensors; model saved to {folder}/{exp}.safetensors")
    log(f"train {exp} end")
else:  # eval_attacks.py
    out = args[args.index("--json") + 1]
    log(f"attack {os.path.basename(out)} start")
    with open("seeds.txt", "a") as f:
        f.write(f"{os.path.basename(out)} {args[args.index('--attack-seed') + 1]}\n")
    time.sleep(0.4)
    open(out, "w").write("{}")
    log(f"attack {os.path.basename(out)} end")
'''


def test_two_sumo_grids_in_one_clone_share_the_steps(tmp_path):
    """Two sumo.sh processes in the same folder: every step (5 trainings and 10 attacks at one budget) runs exactly once,
    both processes work, an attack starts only after its group's training ended, a defense only after the benign
    policies, and a claim left by a dead process is taken over. The Python it calls is a stub that takes 0.8 s a step."""
    import shutil
    import subprocess

    (tmp_path / "benchmark" / "grids").mkdir(parents=True)
    shutil.copy(os.path.join(launch.ROOT, "benchmark", "grids", "sumo.sh"), tmp_path / "benchmark" / "grids")
    (tmp_path / "stub.py").write_text(STUB)
    record = tmp_path / "record.txt"
    dead = tmp_path / "runs" / ".locks" / "sumo-puck.train.self_play"  # a claim by a process that no longer runs
    dead.mkdir(parents=True)
    (dead / "by").write_text("999999999 Mon Jan  1 00:00:00 2026\n")
    env = {**os.environ, "PY": f"{sys.executable} {tmp_path / 'stub.py'}", "STUB_RECORD": str(record), "BUDGETS": "0.3", "POLL_SECONDS": "0.2"}
    grids = [subprocess.Popen(["bash", "benchmark/grids/sumo.sh"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in grids:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    seeds = {line for line in (tmp_path / "seeds.txt").read_text().splitlines()}
    events = [line.split() for line in record.read_text().splitlines()]
    starts = [(kind, name) for kind, name, what, _, _ in events if what == "start"]
    groups = ["two_timescale_eps0.3", "single_eps0.3", "self_play", "fictitious_play"]
    attacks = [f"{g}__sumo-puck__vs0.3{tag}.json" for g in ["benign"] + groups for tag in ("", "__attack_seed1")]  # two attackers each
    assert sorted(starts) == sorted([("train", "phase1")] + [("train", g) for g in groups] + [("attack", a) for a in attacks])
    assert len({pid for *_, pid, _ in events}) == 2  # both processes took steps
    when = {(kind, name, what): float(t) for kind, name, what, _, t in events}
    assert all(when[("train", g, "start")] > when[("train", "phase1", "end")] for g in groups)
    assert all(when[("attack", f"{g}__sumo-puck__vs0.3{tag}.json", "start")] > when[("train", g, "end")] for g in groups for tag in ("", "__attack_seed1"))
    assert seeds == {f"{a} {1 if 'attack_seed1' in a else 0}" for a in attacks}  # each fit seeded by its own --attack-seed
    for g in groups + ["benign"]:
        assert (tmp_path / "benchmark" / "checkpoints" / f"two_timescale_adv__{g}__sumo-puck__3.safetensors").is_file()
    assert not any((tmp_path / "runs" / ".locks").iterdir())  # every claim released
