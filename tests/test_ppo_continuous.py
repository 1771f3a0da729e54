"""ppo_continuous.py: GAE, normalizer, log-prob, checkpoint format, smoke runs, determinism, interrupt and exact resume
(every training script), quiet output, a learning check."""
import glob
import json
import math
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import git_head, one_line_error, run, script_env
from safetensors import safe_open

import ppo_continuous as P
from attacks.checkpoint import CheckpointError, load_checkpoint, policy_hash


def make_agent(env_id="Hopper-v4", obs_dim=11, act_dim=3, seed=0, num_seeds=1):
    """An agent of num_seeds stacked seeds (tensors [N, ...]), perturbed away from its init."""
    torch.manual_seed(seed)
    args = P.resolve_args(P.Args(env_id=env_id))
    agent = P.Agent(obs_dim, act_dim, args, [torch.Generator().manual_seed(seed + n) for n in range(num_seeds)])
    rng = np.random.default_rng(seed)
    agent.obs_norm.update(rng.normal(2.0, 3.0, size=(num_seeds, 500, obs_dim)))
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return agent, args


def test_gae_by_hand():
    # one env, 4 steps; episode terminates at t=1, is truncated at t=3 (its reward already carries gamma * V(final))
    g, lam = 0.9, 0.8
    r = np.array([[1.0], [2.0], [0.5], [3.0]])
    v = np.array([[0.5], [1.0], [2.0], [1.5]])
    ends = np.array([[0.0], [1.0], [0.0], [1.0]])
    adv = P.compute_gae(r, v, ends, next_value=np.array([7.0]), gamma=g, gae_lambda=lam)
    d3 = 3.0 - 1.5  # ends at 3: no bootstrap from next_value
    d2 = 0.5 + g * 1.5 - 2.0
    d1 = 2.0 - 1.0  # terminated
    d0 = 1.0 + g * 1.0 - 0.5
    expected = [d0 + g * lam * d1, d1, d2 + g * lam * d3, d3]
    np.testing.assert_allclose(adv[:, 0], expected, rtol=1e-12)
    # no end inside the rollout: bootstrap from next_value
    adv = P.compute_gae(r, v, np.zeros_like(ends), next_value=np.array([7.0]), gamma=g, gae_lambda=lam)
    assert adv[3, 0] == pytest.approx(3.0 + g * 7.0 - 1.5)


def test_normalizer_matches_numpy():
    """Two seeds' statistics side by side, each from its own data."""
    rng = np.random.default_rng(0)
    data = np.stack([rng.normal([1.0, -5.0, 100.0], [0.1, 2.0, 30.0], size=(3000, 3)), rng.normal(0.0, 1.0, size=(3000, 3))])
    norm = P.ObsNormalizer(3, num_seeds=2)
    for chunk in np.array_split(data, [1, 2, 10, 500, 501, 2999], axis=1):  # batches of 1 and of many
        norm.update(chunk)
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(norm.var.numpy(), data.var(1), rtol=1e-4)
    x = norm.normalize_np(data[:, :5])
    np.testing.assert_allclose(x, np.clip((data[:, :5] - data.mean(1, keepdims=True)) / data.std(1, keepdims=True), -10, 10), rtol=1e-3, atol=1e-4)
    assert np.array_equal(norm.normalize_np(data[1, 7], seed=1), norm.normalize_np(data[:, 7:8])[1, 0])  # one seed's observation
    # clip at +-10
    far = np.array([[[1e6, -1e6, 100.0]], [[1e6, -1e6, 100.0]]])
    assert norm.normalize_np(far)[0, 0, 0] == 10.0 and norm.normalize_np(far)[0, 0, 1] == -10.0


def test_logprob_entropy_match_torch_distributions():
    agent, _ = make_agent(num_seeds=2)
    x, a = torch.randn(2, 7, 11), torch.randn(2, 7, 3)
    _, logprob, entropy, value = agent.get_action_and_value(x, a)
    dist = torch.distributions.Normal(agent.actor(x), agent.actor.log_std.exp().unsqueeze(1))
    torch.testing.assert_close(logprob, dist.log_prob(a).sum(2))
    torch.testing.assert_close(entropy, dist.entropy().sum(2))
    assert value.shape == (2, 7, 1)


def test_stacked_seeds_are_independent_agents():
    """Seed n of a stacked agent computes what seed n's own (single-seed) agent computes, with the same init."""
    stacked, args = make_agent(num_seeds=3)
    x = torch.randn(3, 5, 11)
    for n in range(3):
        alone = P.Agent(11, 3, args, [torch.Generator().manual_seed(n)])
        fresh = P.Agent(11, 3, args, [torch.Generator().manual_seed(m) for m in range(3)])
        for k, v in alone.state_dict().items():
            assert torch.equal(v[0], fresh.state_dict()[k][n]), k  # init from the seed's own generator
        alone.load_seed_state_dict(0, stacked.seed_state_dict(n))
        with torch.no_grad():
            assert torch.equal(alone.actor(x[n : n + 1]), stacked.actor(x)[n : n + 1])
            assert torch.equal(alone.critic(x[n : n + 1]), stacked.critic(x)[n : n + 1])
            assert torch.equal(stacked.critic(x[n : n + 1], seed=n), stacked.critic(x)[n : n + 1])


def test_numpy_actor_matches_torch():
    agent, _ = make_agent(num_seeds=2)
    x = np.random.default_rng(1).normal(size=(2, 5, 11)).astype(np.float32)
    np.testing.assert_allclose(agent.numpy_actor()(x), agent.actor(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip_bit_for_bit(tmp_path):
    agent, args = make_agent(num_seeds=2)
    path = str(tmp_path / "m.safetensors")
    P.save_checkpoint(path, agent, 1, args, global_step=1234)  # seed index 1 of the two
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]  # atomic write leaves no temp file
    policy, meta = load_checkpoint(path, env_id="Hopper-v5", obs_dim=11, act_dim=3, batch_invariant=False)
    assert meta["format"] == 1 and meta["script"] == "ppo_continuous.py" and meta["env_id"] == "Hopper-v4"
    assert meta["global_step"] == 1234 and meta["hidden_sizes"] == [64, 64] and meta["args"]["seed"] == args.seed
    raw = np.random.default_rng(2).normal(2.0, 5.0, size=(64, 11))
    x_agent = agent.obs_norm.normalize_np(np.stack([raw, raw]))[1]
    x_loaded = policy.obs_norm.normalize_np(raw)
    assert np.array_equal(x_agent, x_loaded)
    with safe_open(path, "pt") as f:  # seed 1's tensors, bit for bit, in the single-seed layout
        for k, v in agent.seed_state_dict(1).items():
            assert torch.equal(f.get_tensor(k.replace(".", "/", 1)), v), k
    with torch.no_grad():
        assert torch.equal(agent.actor(torch.from_numpy(np.stack([x_agent, x_agent])))[1], policy.actor(torch.from_numpy(x_loaded)))
    # the default, batch-invariant evaluation forward agrees to float32 rounding
    torch.testing.assert_close(load_checkpoint(path)[0].actor(torch.from_numpy(x_loaded)), policy.actor(torch.from_numpy(x_loaded)))
    # plain safetensors is enough to read it (docs/checkpoint.md)
    with safe_open(path, "np") as f:
        keys = set(f.keys())
        assert json.loads(f.metadata()["robust_rl"])["obs_dim"] == 11
    assert {"actor/layers.0.weight", "actor/layers.2.bias", "actor/log_std", "critic/layers.2.weight", "obs_norm/mean", "obs_norm/var", "obs_norm/count"} <= keys


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    agent, args = make_agent()
    good = str(tmp_path / "good.safetensors")
    P.save_checkpoint(good, agent, 0, args, global_step=1)
    data = open(good, "rb").read()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a model at all" * 10)
    from safetensors.torch import save_file

    foreign = str(tmp_path / "foreign.safetensors")
    save_file({"w": torch.zeros(3)}, foreign)
    for bad, what in [(str(truncated), "truncated"), (str(garbage), "truncated"), (foreign, "not a robust-rl checkpoint"), (str(tmp_path / "missing.safetensors"), "no such file")]:
        with pytest.raises(CheckpointError, match=what) as e:
            load_checkpoint(bad)
        assert os.path.basename(bad) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="is for Hopper-v4, not HalfCheetah-v4"):
        load_checkpoint(good, env_id="HalfCheetah-v4")
    with pytest.raises(CheckpointError, match="obs_dim 11, the env has 17"):
        load_checkpoint(good, obs_dim=17)
    # the CLI turns each into `error: <file>: ...` and exit status 2
    for bad in [str(truncated), foreign, str(tmp_path / "missing.safetensors")]:
        line = one_line_error(run("eval_attacks.py", "--model", bad, "--attacks", "random", "--episodes", "1"))
        assert os.path.basename(bad) in line
    # a checkpoint whose metadata claims another env with other dims is refused against that env
    from safetensors import safe_open

    with safe_open(good, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["robust_rl"])
    odd = dict(meta, activation="gelu")
    save_file(tensors, str(tmp_path / "odd.safetensors"), metadata={"robust_rl": json.dumps(odd)})
    with pytest.raises(CheckpointError, match="unknown activation 'gelu'"):
        load_checkpoint(str(tmp_path / "odd.safetensors"))
    save_file(tensors, str(tmp_path / "list.safetensors"), metadata={"robust_rl": "[1]"})
    with pytest.raises(CheckpointError, match="not a JSON object"):
        load_checkpoint(str(tmp_path / "list.safetensors"))
    meta["env_id"] = "HalfCheetah-v4"
    liar = str(tmp_path / "liar.safetensors")
    save_file(tensors, liar, metadata={"robust_rl": json.dumps(meta)})
    line = one_line_error(run("eval_attacks.py", "--model", liar, "--attacks", "random", "--episodes", "1"))
    assert "liar.safetensors" in line and "do not match HalfCheetah-v4" in line


@pytest.mark.parametrize("env_id", ["Hopper-v4", "HalfCheetah-v5"])
def test_smoke_two_iterations_write_loadable_checkpoint(tmp_path, env_id):
    proc = run("ppo_continuous.py", "--env-id", env_id, "--total-timesteps", 512, "--num-steps", 256, "--num-minibatches", 4,
               "--update-epochs", 2, "--eval-episodes", 1, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = glob.glob(str(tmp_path / "runs" / f"{env_id}__ppo_continuous__1__*" / "ppo_continuous.safetensors"))
    policy, meta = load_checkpoint(path, env_id=env_id)
    assert meta["global_step"] == 512 and meta["env_id"] == env_id
    assert meta["git_commit"].removesuffix("-dirty") == git_head()  # the commit the run started from
    assert 0 < policy.obs_norm.count.item() and np.all(policy.obs_norm.var.numpy() > 0)
    ret = float(re.search(r"eval: natural return (\S+)", proc.stdout).group(1))
    assert math.isfinite(ret)
    assert glob.glob(str(tmp_path / "runs" / f"{env_id}__ppo_continuous__1__*" / "events.out.tfevents.*"))


def test_determinism_same_seed_same_model(tmp_path):
    hashes = []
    for i, seed in enumerate([3, 3, 4]):
        d = tmp_path / str(i)
        d.mkdir()
        proc = run("ppo_continuous.py", "--env-id", "Hopper-v4", "--seed", seed, "--total-timesteps", 512, "--num-steps", 512,
                   "--num-minibatches", 8, "--update-epochs", 2, "--eval-episodes", 0, cwd=d, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (path,) = glob.glob(str(d / "runs" / "*" / "ppo_continuous.safetensors"))
        hashes.append(policy_hash(load_checkpoint(path)[0]))
    assert hashes[0] == hashes[1], "same seed, different model after one iteration"
    assert hashes[0] != hashes[2], "different seeds gave the same model"


def test_learns_inverted_pendulum(tmp_path):
    # a learning check that can fail: random policies score ~5-10 here, the cap is 1000
    proc = run("ppo_continuous.py", "--env-id", "InvertedPendulum-v4", "--total-timesteps", 40960, "--eval-episodes", 5,
               "--no-save-model", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ret = float(re.search(r"eval: natural return (\S+)", proc.stdout).group(1))
    assert ret >= 500, proc.stdout[-2000:]


# tiny budgets: if a check regresses, the run trains for a second and the test fails at once, not at a timeout
TINY = ("--env-id", "Hopper-v4", "--total-timesteps", 128, "--num-steps", 64, "--num-minibatches", 2, "--update-epochs", 1, "--eval-episodes", 0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env-id", "NoSuchEnv-v0"], "unknown env id"),
        (["--env-id", "Pendulum-v1"], "Pendulum-v1 is not a MuJoCo env"),
        (["--total-timesteps", "-5"], "--total-timesteps must be positive"),
        (["--num-minibatches", "7"], "does not divide the batch size 64"),
        (["--learning-rate", "0"], "--learning-rate must be positive"),
        (["--hidden-sizes", "64", "0"], "--hidden-sizes"),
        (["--resume", "nowhere.safetensors"], "no such file"),
    ],
)
def test_bad_input_exit_2(tmp_path, args, message):
    line = one_line_error(run("ppo_continuous.py", *TINY, *args, cwd=tmp_path, timeout=60))
    assert message in line


def test_resume_refuses_what_it_cannot_continue(tmp_path, root):
    zoo = os.path.join(root, "zoo", "ppo_continuous__Hopper-v4.safetensors")
    assert "holds no training state" in one_line_error(run("ppo_continuous.py", "--resume", zoo, cwd=tmp_path, timeout=60))
    barppo = os.path.join(root, "zoo", "barppo__Hopper-v4.safetensors")
    assert "written by barppo.py" in one_line_error(run("ppo_continuous.py", "--resume", barppo, cwd=tmp_path, timeout=60))
    assert "is a folder" in one_line_error(run("ppo_continuous.py", "--resume", os.path.join(root, "zoo"), cwd=tmp_path, timeout=60))
    proc = run("ppo_continuous.py", *TINY, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = glob.glob(str(tmp_path / "runs" / "*" / "ppo_continuous.safetensors"))
    line = one_line_error(run("ppo_continuous.py", "--resume", path, "--learning-rate", 0.1, cwd=tmp_path, timeout=60))
    assert "--learning-rate 0.1 differs from the run's 0.0003" in line
    done = run("ppo_continuous.py", "--resume", path, cwd=tmp_path, timeout=60)
    assert done.returncode == 0 and "already finished at step 128" in done.stdout, done.stdout + done.stderr[-2000:]


RESUME_ARGS = ("--env-id", "Hopper-v4", "--total-timesteps", 3072, "--num-steps", 512, "--num-minibatches", 8, "--update-epochs", 2,
               "--eval-episodes", 0, "--progress", "False", "--save-every", 0)


def read_all(path):
    with safe_open(path, framework="pt") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def without_group(meta):
    """The metadata but for `resume.group`, the sibling seeds' folder names (their names hold the start time)."""
    state = json.loads(meta["resume"])
    return {**meta, "resume": {k: v for k, v in state.items() if k != "group"}}


PRUNE = ("--hidden-sizes", 32, 32, "--burn-in", 0.1, "--prune-interval", 3)  # masks change before and after the signal


@pytest.mark.slow
@pytest.mark.parametrize(
    "script,sig,seeds,extra",
    [("ppo_continuous", signal.SIGINT, 1, ()), ("sappo", signal.SIGTERM, 1, ()), ("arppo", signal.SIGINT, 1, ()), ("barppo", signal.SIGTERM, 1, ()),
     ("ppo_continuous", signal.SIGTERM, 2, ()), ("barppo", signal.SIGINT, 2, ()),
     ("pruned_ppo", signal.SIGINT, 2, ("--prune-method", "saliency", *PRUNE)), ("pruned_ppo", signal.SIGTERM, 1, ("--prune-method", "magnitude_ste", *PRUNE)),
     ("two_timescale_adv", signal.SIGTERM, 2, ("--defense", "two_timescale", "--eps-pi", 0.3)),
     ("two_timescale_adv", signal.SIGINT, 1, ("--defense", "min_oracle", "--oracle-iters", 2, "--eps-pi", 0.3))],
)
def test_interrupt_saves_and_resume_is_bit_identical(tmp_path, root, script, sig, seeds, extra):
    """Signal a run after its second iteration: it saves (every seed) and exits 128 + signum with one line; --resume with
    the first seed's checkpoint then ends with checkpoints equal, tensor for tensor (weights, normalizer, Adam, RNGs,
    envs) and in their metadata, to those of an uninterrupted run."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    flags = (*RESUME_ARGS, "--num-seeds", seeds, *extra)
    full = run(f"{script}.py", *flags, cwd=tmp_path / "a", timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]
    proc = subprocess.Popen([sys.executable, os.path.join(root, f"{script}.py"), *map(str, flags)], cwd=tmp_path / "b",
                            env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("iter 2/6"):
            proc.send_signal(sig)
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err
    paths = sorted(glob.glob(str(tmp_path / "b" / "runs" / "*" / f"{script}.safetensors")))
    refs = sorted(glob.glob(str(tmp_path / "a" / "runs" / "*" / f"{script}.safetensors")))
    assert len(paths) == len(refs) == seeds
    rel = os.path.relpath(paths[0], tmp_path / "b")
    saved = re.escape(rel) + (f" and the other {seeds - 1} seeds'" if seeds > 1 else "")
    # the signal lands in iteration 3 at the latest (it may arrive after iteration 2's line, while iteration 3 runs)
    m = re.fullmatch(rf"interrupted at step (1024|1536); saved {saved}; resume with --resume {re.escape(rel)}", err.strip().splitlines()[-1])
    assert m, err[-2000:]
    resumed = run(f"{script}.py", "--resume", rel, "--eval-episodes", 0, "--progress", "False", "--save-every", 0, cwd=tmp_path / "b", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed {rel} at step {m.group(1)}" in resumed.stdout
    for ref, path in zip(refs, paths):  # the folders sort by seed
        (meta_a, tensors_a), (meta_b, tensors_b) = read_all(ref), read_all(path)
        assert without_group(meta_a) == without_group(meta_b)
        assert tensors_a.keys() == tensors_b.keys() and any(k.startswith("resume/env/") for k in tensors_a)
        for k in tensors_a:
            assert torch.equal(tensors_a[k], tensors_b[k]), k


@pytest.mark.slow
@pytest.mark.parametrize("script", ["ppo_continuous", "barppo"])
def test_seed_k_of_a_multi_seed_run_is_the_single_seed_run(tmp_path, script):
    """--seed 1 --num-seeds 3 trains seed 2 as --seed 2 alone does: same init, same env seeds, same RNG streams, same
    folder layout and checkpoint. Every tensor matches to float32 rounding after 4 iterations, not bit for bit: fused
    Adam rounds a tensor's vectorized body and its scalar tail differently, and a parameter of fewer elements per seed
    than the SIMD width (log-std, the output biases) falls in other parts of the loop when 3 seeds are stacked."""
    flags = ("--env-id", "Hopper-v4", "--total-timesteps", 2048, "--num-steps", 512, "--num-minibatches", 8, "--update-epochs", 2,
             "--eval-episodes", 1, "--progress", "False")
    (tmp_path / "one").mkdir()
    (tmp_path / "three").mkdir()
    one = run(f"{script}.py", *flags, "--seed", 2, cwd=tmp_path / "one", timeout=300)
    three = run(f"{script}.py", *flags, "--seed", 1, "--num-seeds", 3, cwd=tmp_path / "three", timeout=300)
    assert one.returncode == 0 and three.returncode == 0, one.stderr[-2000:] + three.stderr[-2000:]
    folders = sorted(os.listdir(tmp_path / "three" / "runs"))
    assert [f.split("__")[2] for f in folders] == ["1", "2", "3"]
    for folder in folders:  # each seed its own run folder, TensorBoard run and checkpoint
        assert glob.glob(str(tmp_path / "three" / "runs" / folder / "events.out.tfevents.*"))
    assert re.search(r"^seed 2: eval: natural return \S+", three.stdout, re.M) and "seed 3: model saved to" in three.stdout
    (ref,) = glob.glob(str(tmp_path / "one" / "runs" / "*" / f"{script}.safetensors"))
    (path,) = glob.glob(str(tmp_path / "three" / "runs" / f"Hopper-v4__{script}__2__*" / f"{script}.safetensors"))
    (meta_a, tensors_a), (meta_b, tensors_b) = read_all(ref), read_all(path)
    args_a, args_b = json.loads(meta_a["robust_rl"]).pop("args"), json.loads(meta_b["robust_rl"]).pop("args")
    assert {k: v for k, v in args_a.items() if args_b[k] != v} == {"num_seeds": 1} and args_b["seed"] == 2
    assert tensors_a.keys() == tensors_b.keys()
    for k, a in tensors_a.items():
        if a.is_floating_point():
            torch.testing.assert_close(tensors_b[k], a, rtol=1e-4, atol=1e-6 * max(1.0, a.abs().max().item()), msg=k)
        elif not k.endswith("torch_rng"):  # step counts, episode lengths
            assert torch.equal(tensors_b[k], a), k
    assert torch.equal(tensors_a["resume/torch_rng"], tensors_b["resume/torch_rng"])  # the same draws from the same stream


@pytest.mark.slow
def test_two_envs_quiet_output_and_readable_files(tmp_path):
    """--num-envs 2 on HalfCheetah-v4, with Python's warnings as a user sees them: MuJoCo's settotalmass deprecation
    never shows (nor MUJOCO_LOG.TXT), gymnasium's -v4 notice once; the run folder and checkpoint are group-readable."""
    proc = run("ppo_continuous.py", "--env-id", "HalfCheetah-v4", "--num-envs", 2, "--total-timesteps", 512, "--num-steps", 128,
               "--num-minibatches", 4, "--update-epochs", 1, "--eval-episodes", 1, cwd=tmp_path, timeout=300, python_warnings=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "settotalmass" not in proc.stderr and not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert proc.stderr.count("HalfCheetah-v4 is out of date") == 1, proc.stderr
    (path,) = glob.glob(str(tmp_path / "runs" / "HalfCheetah-v4__ppo_continuous__1__*" / "ppo_continuous.safetensors"))
    assert load_checkpoint(path)[1]["global_step"] == 512
    assert os.stat(path).st_mode & 0o044 == 0o044 and os.stat(os.path.dirname(path)).st_mode & 0o055 == 0o055


def test_help_hides_computed_fields():
    out = run("ppo_continuous.py", "--help", timeout=60).stdout
    assert "--num-minibatches" in out and "--resume" in out
    assert "--batch-size" not in out and "--minibatch-size" not in out and "--num-iterations" not in out
