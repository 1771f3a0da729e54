"""ppo_continuous.py: GAE, normalizer, log-prob, checkpoint format, smoke runs, determinism, a learning check."""
import glob
import json
import math
import os
import re

import numpy as np
import pytest
import torch
from conftest import one_line_error, run

import ppo_continuous as P
from attacks.checkpoint import CheckpointError, load_checkpoint, policy_hash


def make_agent(env_id="Hopper-v4", obs_dim=11, act_dim=3, seed=0):
    torch.manual_seed(seed)
    args = P.resolve_args(P.Args(env_id=env_id))
    agent = P.Agent(obs_dim, act_dim, args)
    rng = np.random.default_rng(seed)
    agent.obs_norm.update(rng.normal(2.0, 3.0, size=(500, obs_dim)))
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
    rng = np.random.default_rng(0)
    data = rng.normal([1.0, -5.0, 100.0], [0.1, 2.0, 30.0], size=(3000, 3))
    norm = P.ObsNormalizer(3)
    for chunk in np.array_split(data, [1, 2, 10, 500, 501, 2999]):  # batches of 1 and of many
        norm.update(chunk)
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-4)
    x = norm.normalize_np(data[:5])
    np.testing.assert_allclose(x, np.clip((data[:5] - data.mean(0)) / data.std(0), -10, 10), rtol=1e-3, atol=1e-4)
    # torch and numpy paths agree, and clip at +-10
    far = np.array([[1e6, -1e6, 100.0]])
    np.testing.assert_allclose(norm(torch.from_numpy(far)).numpy(), norm.normalize_np(far), rtol=1e-6)
    assert norm.normalize_np(far)[0, 0] == 10.0 and norm.normalize_np(far)[0, 1] == -10.0


def test_logprob_entropy_match_torch_distributions():
    agent, _ = make_agent()
    x, a = torch.randn(7, 11), torch.randn(7, 3)
    _, logprob, entropy, value = agent.get_action_and_value(x, a)
    dist = torch.distributions.Normal(agent.actor(x), agent.actor.log_std.exp())
    torch.testing.assert_close(logprob, dist.log_prob(a).sum(1))
    torch.testing.assert_close(entropy, dist.entropy().sum(1))
    assert value.shape == (7, 1)


def test_numpy_actor_matches_torch():
    agent, _ = make_agent()
    x = np.random.default_rng(1).normal(size=(5, 11)).astype(np.float32)
    np.testing.assert_allclose(agent.numpy_actor()(x), agent.actor(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip_bit_for_bit(tmp_path):
    agent, args = make_agent()
    path = str(tmp_path / "m.safetensors")
    P.save_checkpoint(path, agent, args, global_step=1234)
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]  # atomic write leaves no temp file
    policy, meta = load_checkpoint(path, env_id="Hopper-v5", obs_dim=11, act_dim=3, batch_invariant=False)
    assert meta["format"] == 1 and meta["script"] == "ppo_continuous.py" and meta["env_id"] == "Hopper-v4"
    assert meta["global_step"] == 1234 and meta["hidden_sizes"] == [64, 64] and meta["args"]["seed"] == args.seed
    raw = np.random.default_rng(2).normal(2.0, 5.0, size=(64, 11))
    x_agent = agent.obs_norm.normalize_np(raw)
    x_loaded = policy.obs_norm.normalize_np(raw)
    assert np.array_equal(x_agent, x_loaded)
    with torch.no_grad():
        assert torch.equal(agent.actor(torch.from_numpy(x_agent)), policy.actor(torch.from_numpy(x_loaded)))
        assert torch.equal(agent.critic(torch.from_numpy(x_agent)), policy.critic(torch.from_numpy(x_loaded)))
    assert torch.equal(agent.actor.log_std, policy.actor.log_std)
    # the default, batch-invariant evaluation forward agrees to float32 rounding
    torch.testing.assert_close(load_checkpoint(path)[0].actor(torch.from_numpy(x_loaded)), policy.actor(torch.from_numpy(x_loaded)))
    # plain safetensors is enough to read it (DESIGN.md section 3)
    from safetensors import safe_open

    with safe_open(path, "np") as f:
        keys = set(f.keys())
        assert json.loads(f.metadata()["robust_rl"])["obs_dim"] == 11
    assert {"actor/layers.0.weight", "actor/layers.2.bias", "actor/log_std", "critic/layers.2.weight", "obs_norm/mean", "obs_norm/var", "obs_norm/count"} <= keys


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    agent, args = make_agent()
    good = str(tmp_path / "good.safetensors")
    P.save_checkpoint(good, agent, args, global_step=1)
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
    import subprocess

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(P.__file__), capture_output=True, text=True).stdout.strip()
    assert meta["git_commit"].removesuffix("-dirty") == head  # the commit the run started from
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


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env-id", "NoSuchEnv-v0"], "unknown env id"),
        (["--total-timesteps", "-5"], "--total-timesteps must be positive"),
        (["--num-minibatches", "7"], "does not divide the batch size 2048"),
        (["--learning-rate", "0"], "--learning-rate must be positive"),
        (["--hidden-sizes", "64", "0"], "--hidden-sizes"),
    ],
)
def test_bad_input_exit_2(tmp_path, args, message):
    line = one_line_error(run("ppo_continuous.py", *args, cwd=tmp_path))
    assert message in line
