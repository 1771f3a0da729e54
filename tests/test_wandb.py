"""--track: every seed's W&B run carries the configuration's group and tags, and is finished. A stub `wandb` module
(first on PYTHONPATH) records what the script asks of W&B, so this needs neither an account nor the network."""
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, script_env

STUB = '''
import json, os, uuid
class _Run:
    def __init__(self, kw):
        self.id = kw.get("id") or uuid.uuid4().hex[:8]
        self.kw = kw
    def define_metric(self, *a, **k):
        pass
    def log(self, *a, **k):
        pass
    def finish(self):
        with open(os.environ["WANDB_STUB_LOG"], "a") as f:
            f.write(json.dumps({k: v for k, v in self.kw.items() if k in ("group", "tags", "name")}) + "\\n")
def init(**kw):
    return _Run(kw)
'''

TINY = ("--total-timesteps", 128, "--num-steps", 64, "--num-minibatches", 2, "--update-epochs", 1, "--eval-episodes", 0)


def tracked(tmp_path, script, *args):
    stub = tmp_path / "stub"
    stub.mkdir(exist_ok=True)
    (stub / "wandb.py").write_text(STUB)
    log = tmp_path / f"{script}.jsonl"
    env = script_env()
    env.update(PYTHONPATH=f"{stub}{os.pathsep}{ROOT}", WANDB_STUB_LOG=str(log))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, script), "--track", *map(str, TINY), *map(str, args)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.slow
def test_ppo_seeds_share_a_group_and_are_finished(tmp_path):
    runs = tracked(tmp_path, "ppo_continuous.py", "--env-id", "Hopper-v4", "--seed", 3, "--num-seeds", 2)
    assert len(runs) == 2  # both seeds' runs reached finish()
    assert {r["group"] for r in runs} == {"Hopper-v4__ppo_continuous"}
    assert all(r["tags"] == ["ppo_continuous", "Hopper-v4"] for r in runs)
    assert sorted(r["name"].split("__")[2] for r in runs) == ["3", "4"]


@pytest.mark.slow
def test_robust_script_tags_name_kappa_and_eps(tmp_path):
    runs = tracked(tmp_path, "barppo.py", "--env-id", "Hopper-v4", "--kappa", 0.3, "--no-guidance")
    assert [r["group"] for r in runs] == ["Hopper-v4__barppo__kappa0.3__nog"]
    assert runs[0]["tags"] == ["barppo", "Hopper-v4", "kappa=0.3", "eps=0.075", "no-guidance"]
    runs = tracked(tmp_path, "sappo.py", "--env-id", "Hopper-v4", "--kappa", 1.0, "--wandb-group", "mine")
    assert [r["group"] for r in runs] == ["mine"]  # the flag wins over the default
    assert runs[0]["tags"] == ["sappo", "Hopper-v4", "kappa=1.0", "eps=0.075"]


@pytest.mark.slow
def test_evaluation_joins_the_training_group(tmp_path):
    train = tracked(tmp_path, "pruned_ppo.py", "--env-id", "Hopper-v4", "--kappa", 0.0, "--target-sparsity", 0.3)
    (ckpt,) = (tmp_path / "runs").glob("*/pruned_ppo.safetensors")
    log = tmp_path / "eval.jsonl"
    env = script_env()
    env.update(PYTHONPATH=f"{tmp_path / 'stub'}{os.pathsep}{ROOT}", WANDB_STUB_LOG=str(log))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "eval_attacks.py"), "--model", str(ckpt), "--attacks", "random",
                           "--episodes", "2", "--epsilons", "0.05", "0.1", "--track"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(runs) == 2  # one per eps, each finished
    assert {r["group"] for r in runs} == {train[0]["group"]} == {"Hopper-v4__pruned_ppo__kappa0.0__magnitude0.3"}
    assert all(r["tags"] == train[0]["tags"] + ["eval"] for r in runs)


def test_pruning_labels_name_a_non_default_interval():
    """pruned_ppo.py and eval_attacks.py label a run alike; the interval ablation gets a group of its own."""
    import dataclasses

    import eval_attacks
    import pruned_ppo

    for interval, group in ((10, "Hopper-v4__pruned_ppo__kappa1.0__magnitude0.5"), (1, "Hopper-v4__pruned_ppo__kappa1.0__magnitude0.5__interval1")):
        args = pruned_ppo.resolve_args(pruned_ppo.Args(env_id="Hopper-v4", prune_interval=interval))
        train = pruned_ppo.wandb_labels(args)
        meta = {"script": "pruned_ppo.py", "env_id": "Hopper-v4", "args": dataclasses.asdict(args)}
        assert train == eval_attacks.wandb_labels(meta) and train[0] == group and f"interval={interval}" in train[1]
