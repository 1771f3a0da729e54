"""two_timescale_adv.py. Kuhn: the defenses run and write their curves and policies; the min oracle reaches the most
robust victim; the average iterate is the realization-weighted one; sampled gradients estimate the exact ones.
MuJoCo (PR-MDP): the attacker takes over eps_pi of the steps, learns only from them, is saved under adversary/, and
the victim's checkpoint evaluates like any other; the fused victim-and-attacker computation equals the reference path."""
import glob
import json
import os

import numpy as np
import pytest
import torch
from conftest import one_line_error, run

import two_timescale_adv as T
from envs import kuhn

FAST = ("--iterations", 200, "--log-every", 50)


@pytest.mark.parametrize("defense", ["none", "single", "two_timescale", "min_oracle"])
def test_each_defense_writes_curves_and_policies(tmp_path, defense):
    proc = run("two_timescale_adv.py", "--defense", defense, "--eps-pi", 0.5, *FAST, "--save-policy", tmp_path / "p.json", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (metrics,) = glob.glob(str(tmp_path / "runs" / "kuhn__two_timescale_adv__1__*" / "metrics.json"))
    m = json.load(open(metrics))
    assert m["curves"]["iteration"] == [50, 100, 150, 200] and m["args"]["defense"] == defense
    optimum, _ = kuhn.robust_optimum(2, kuhn.uniform_policy(), 0.5)
    assert m["robust_optimum"] == pytest.approx(optimum, abs=1e-12)
    assert all(g >= -1e-9 for g in m["curves"]["gap_last"] + m["curves"]["gap_avg"])  # nothing beats the most robust victim
    player, policy = kuhn.load_policy(tmp_path / "p.json")
    assert player == 2 and policy.shape == (6,)
    # the curve's last point is the saved policy's exact gap
    worst = kuhn.worst_case_value(2, policy, kuhn.uniform_policy(), 0.5)
    assert m["curves"]["gap_last"][-1] == pytest.approx(optimum - worst, abs=1e-9)


def test_min_oracle_reaches_the_most_robust_victim_and_beats_no_defense(tmp_path):
    """Algorithm 1 at eps_pi = 1 (the robust optimum is player 2's game value, 1/18): after 1000 steps the victim is
    within 0.005 of the most robust policy, while the victim trained without an attacker stays far from it."""
    gaps = {}
    for defense in ("min_oracle", "none"):
        d = tmp_path / defense
        d.mkdir()
        proc = run("two_timescale_adv.py", "--defense", defense, "--eps-pi", 1.0, "--iterations", 1000, "--log-every", 500, cwd=d, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        (metrics,) = glob.glob(str(d / "runs" / "*" / "metrics.json"))
        m = json.load(open(metrics))
        assert m["robust_optimum"] == pytest.approx(1 / 18, abs=1e-9)
        gaps[defense] = m["curves"]["gap_last"][-1]
    assert gaps["min_oracle"] < 0.005 and gaps["none"] > 0.1


def test_average_iterate_plays_like_the_mixture_of_iterates():
    """Values are linear in realization plans: the realization-weighted average policy's value against any opponent
    is the mean of the iterates' values (a plain average of player 1's behaviour probabilities is not)."""
    rng = np.random.default_rng(0)
    iterates = rng.uniform(0, 1, (7, 6))
    weights = np.array([T.reach_weights(1, p) for p in iterates])
    avg = (weights * iterates).sum(0) / weights.sum(0)
    for opponent in rng.uniform(0, 1, (5, 6)):
        mean_value = np.mean([kuhn.value(1, p, opponent) for p in iterates])
        assert kuhn.value(1, avg, opponent) == pytest.approx(mean_value, abs=1e-12)
    assert abs(kuhn.value(1, iterates.mean(0), opponent) - mean_value) > 1e-4  # the naive average differs
    assert np.all(T.reach_weights(2, iterates[0]) == 1.0)


def test_sampled_gradients_estimate_the_exact_ones():
    rng = np.random.default_rng(1)
    victim_probs, adversary_probs, benign = rng.uniform(0.2, 0.8, 6), rng.uniform(0.2, 0.8, 6), kuhn.uniform_policy()
    _, g_victim, g_adversary = kuhn.attacked_value_and_prob_grads(2, victim_probs, adversary_probs, benign, 0.5)
    est = [T.sampled_grads(2, victim_probs, adversary_probs, benign, 0.5, 4000, rng) for _ in range(10)]
    np.testing.assert_allclose(np.mean([e[0] for e in est], 0), g_victim, atol=0.03)
    np.testing.assert_allclose(np.mean([e[1] for e in est], 0), g_adversary, atol=0.03)
    assert np.abs(g_victim).max() > 0.1 and np.abs(g_adversary).max() > 0.05  # not trivially zero


@pytest.mark.parametrize("flags,message", [(("--env-id", "sumo-frog"), "unknown sumo arena"), (("--eps-pi", 1.5), "--eps-pi"),
                                           (("--num-seeds", 2, "--save-policy", "x.json"), "--save-policy"),
                                           (("--timescale-ratio", 0), "--timescale-ratio"), (("--victim-player", 3), "--victim-player")])
def test_bad_input_exit_2(tmp_path, flags, message):
    assert message in one_line_error(run("two_timescale_adv.py", *FAST, *flags, cwd=tmp_path, timeout=60))
    assert not os.path.exists(tmp_path / "runs")


def test_benign_policy_file_must_be_alphas(tmp_path):
    kuhn.save_policy(tmp_path / "p2.json", 2, kuhn.uniform_policy())
    assert "alpha is player 1" in one_line_error(run("two_timescale_adv.py", *FAST, "--benign-policy", tmp_path / "p2.json", cwd=tmp_path, timeout=60))
    kuhn.save_policy(tmp_path / "p1.json", 1, np.full(6, 0.3))
    proc = run("two_timescale_adv.py", *FAST, "--benign-policy", tmp_path / "p1.json", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]


PRMDP = ("--env-id", "Hopper-v4", "--total-timesteps", 1024, "--num-steps", 256, "--num-minibatches", 4, "--update-epochs", 2, "--eval-episodes", 0,
         "--progress", "False")


@pytest.mark.slow
def test_prmdp_attacker_acts_eps_pi_of_the_steps_and_is_saved(tmp_path):
    from safetensors import safe_open
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from attacks.checkpoint import load_checkpoint

    proc = run("two_timescale_adv.py", *PRMDP, "--defense", "two_timescale", "--eps-pi", 0.3, "--num-seeds", 2, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths = sorted(glob.glob(str(tmp_path / "runs" / "Hopper-v4__two_timescale_adv__*" / "two_timescale_adv.safetensors")))
    assert len(paths) == 2
    policy, meta = load_checkpoint(paths[0], env_id="Hopper-v4")  # the victim reads as any checkpoint
    assert meta["args"]["eps_pi"] == 0.3 and meta["args"]["attacker_lr"] == pytest.approx(10 * meta["args"]["learning_rate"])
    with safe_open(paths[0], "pt") as f:
        keys = set(f.keys())
    assert {"adversary/actor.layers.0.weight", "adversary/actor.log_std", "adversary/critic.layers.2.weight"} <= keys
    acc = EventAccumulator(glob.glob(os.path.join(os.path.dirname(paths[0]), "events.out.tfevents.*"))[0])
    acc.Reload()
    shares = [e.value for e in acc.Scalars("adversary/share")]  # 4 iterations x 256 steps: binomial(256, 0.3) each
    assert len(shares) == 4 and all(0.2 < v < 0.4 for v in shares)
    assert all(np.isfinite(e.value) and e.value > 0 for e in acc.Scalars("adversary/victim_grad_norm"))
    # the separation the run actually had: the attacker moved (its KL and clip fraction are logged beside the victim's)
    assert all(np.isfinite(e.value) and e.value > 0 for e in acc.Scalars("adversary/approx_kl"))
    assert all(0 <= e.value <= 1 for e in acc.Scalars("adversary/clipfrac")) and len(acc.Scalars("adversary/log_std")) == 4


def test_masked_normalize_uses_only_the_steps_the_agent_acted():
    """Each learner's advantages are normalized over the steps it acted: on those, mean 0 and std 1 per seed; the other
    steps' values do not move them; an all-ones mask is the usual per-minibatch normalization. The attack suite's copy
    (action_mix's adversary) computes the same."""
    from attacks.ppo_adversary import masked_normalize as suite_copy

    g = torch.Generator().manual_seed(0)
    x, mask = torch.randn(3, 64, generator=g) + 2.0, (torch.rand(3, 64, generator=g) < 0.3).float()
    y = T.masked_normalize(x, mask)
    for n in range(3):
        acted = y[n][mask[n] == 1]
        assert acted.mean().abs() < 1e-6 and acted.std().item() == pytest.approx(1.0, abs=1e-5)
    x2 = torch.where(mask == 1, x, torch.full_like(x, 1e3))
    assert torch.equal(T.masked_normalize(x2, mask)[mask == 1], y[mask == 1])
    plain = (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-8)
    assert torch.allclose(T.masked_normalize(x, torch.ones_like(x)), plain, atol=1e-6)
    assert torch.equal(suite_copy(x, mask), y)


@pytest.mark.parametrize("defense,flags,victim_lr,victim_vlr,attacker_lr", [
    ("two_timescale", (), 3e-4, 2.5e-4, 3e-3),                                   # Hopper's rates; the attacker's follow
    ("two_timescale", ("--attacker-lr", 1e-3), 1e-4, 2.5e-4 / 3, 1e-3),          # the victim's follow --attacker-lr
    ("single", ("--attacker-lr", 1e-3), 1e-3, 2.5e-4 * 10 / 3, 1e-3),
    ("min_oracle", ("--attacker-lr", 1e-3, "--timescale-ratio", 4), 2.5e-4, 2.5e-4 * 2.5e-4 / 3e-4, 1e-3),
    ("two_timescale", ("--attacker-lr", 1e-3, "--learning-rate", 1e-4, "--value-learning-rate", 5e-5), 1e-4, 5e-5, 1e-3),
])
def test_prmdp_learning_rates_follow_the_timescale_ratio(defense, flags, victim_lr, victim_vlr, attacker_lr):
    import tyro

    args = T.resolve_args(tyro.cli(T.Args, args=["--env-id", "Hopper-v4", "--defense", defense, *map(str, flags)]))
    assert (args.learning_rate, args.value_learning_rate, args.attacker_lr) == pytest.approx((victim_lr, victim_vlr, attacker_lr))


def test_prmdp_attacker_lr_and_learning_rate_must_agree(tmp_path):
    proc = run("two_timescale_adv.py", *PRMDP, "--defense", "two_timescale", "--attacker-lr", 1e-3, "--learning-rate", 3e-4, cwd=tmp_path, timeout=60)
    assert "--attacker-lr" in one_line_error(proc) and "give one of the two" in proc.stderr


@pytest.mark.slow
def test_prmdp_without_attacker_has_no_adversary(tmp_path):
    proc = run("two_timescale_adv.py", *PRMDP, "--defense", "none", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors import safe_open

    (path,) = glob.glob(str(tmp_path / "runs" / "*" / "two_timescale_adv.safetensors"))
    with safe_open(path, "pt") as f:
        assert not [k for k in f.keys() if k.startswith("adversary/")]


@pytest.mark.parametrize("defense,oracle_iters,attacker_updates", [("min_oracle", 2, 2), ("two_timescale", 3, 3), ("min_oracle", 1, 1)])
def test_prmdp_oracle_iters_update_the_attacker_alone_before_the_victim(tmp_path, defense, oracle_iters, attacker_updates):
    """--oracle-iters K: the attacker takes K PPO iterations per victim iteration, the extra ones on rollouts where the
    victim is frozen: the victim's Adam step count, normalizer count and global_step are those of the victim's own
    iterations (4 x 2 epochs x 4 minibatches = 32 steps, 1024 observations), the attacker's Adam counts K times that."""
    from safetensors import safe_open

    proc = run("two_timescale_adv.py", *PRMDP, "--defense", defense, "--oracle-iters", oracle_iters, "--eps-pi", 0.3, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = glob.glob(str(tmp_path / "runs" / "*" / "two_timescale_adv.safetensors"))
    with safe_open(path, "pt") as f:
        steps = {int(k.split("/")[2]): f.get_tensor(k).item() for k in f.keys() if k.startswith("resume/adam/") and k.endswith("/step")}
        count, meta = f.get_tensor("obs_norm/count").item(), json.loads(f.metadata()["robust_rl"])
    victim = [steps[i] for i in range(13)]  # the optimizer's groups: victim actor (7 tensors) and critic (6), then the attacker's
    attacker = [steps[i] for i in range(13, 26)]
    assert len(steps) == 26 and victim == [32.0] * 13 and attacker == [32.0 * attacker_updates] * 13
    assert count == pytest.approx(1024, abs=1e-3) and meta["global_step"] == 1024
    assert meta["args"]["attacker_lr"] == pytest.approx(10 * meta["args"]["learning_rate"])  # min_oracle's attacker is the fast one


def test_prmdp_oracle_iters_need_an_attacker(tmp_path):
    assert "--oracle-iters" in one_line_error(run("two_timescale_adv.py", *PRMDP, "--defense", "none", "--oracle-iters", 2, cwd=tmp_path, timeout=60))
    assert "--oracle-iters" in one_line_error(run("two_timescale_adv.py", *PRMDP, "--oracle-iters", 0, cwd=tmp_path, timeout=60))


@pytest.mark.slow
@pytest.mark.parametrize("defense,extra", [("single", ()), ("two_timescale", ("--num-seeds", 2, "--clip-vloss", True))])
def test_prmdp_fused_update_equals_the_reference_path(tmp_path, defense, extra):
    """The default (victim and attacker as one stacked network: one forward per rollout step, one forward and backward
    per minibatch) computes what --no-fused-update (two separate networks) does: after 2 iterations every checkpoint
    tensor (weights, normalizer, Adam state, RNG streams, envs) matches to float32 rounding, the runs' flags differ
    only in --fused-update, and the episodes' returns (the second iteration's come from the updated policies) are
    identical."""
    from safetensors import safe_open
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    flags = ("--env-id", "Hopper-v4", "--total-timesteps", 1024, "--num-steps", 512, "--num-minibatches", 4, "--update-epochs", 2,
             "--eval-episodes", 0, "--progress", "False", "--defense", defense, "--eps-pi", 0.3, *extra)
    checkpoints, returns = {}, {}
    for name, fused in (("fused", ()), ("reference", ("--no-fused-update",))):
        (tmp_path / name).mkdir()
        proc = run("two_timescale_adv.py", *flags, *fused, cwd=tmp_path / name, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        checkpoints[name], returns[name] = [], []
        for path in sorted(glob.glob(str(tmp_path / name / "runs" / "*" / "two_timescale_adv.safetensors"))):  # by seed
            with safe_open(path, "pt") as f:
                checkpoints[name].append((json.loads(f.metadata()["robust_rl"])["args"], {k: f.get_tensor(k) for k in f.keys()}))
            acc = EventAccumulator(glob.glob(os.path.join(os.path.dirname(path), "events.out.tfevents.*"))[0])
            acc.Reload()
            returns[name].append([(e.step, e.value) for e in acc.Scalars("charts/episodic_return")])
    assert len(checkpoints["fused"]) == len(checkpoints["reference"]) == (2 if "--num-seeds" in extra else 1)
    for (args_a, tensors_a), (args_b, tensors_b) in zip(checkpoints["fused"], checkpoints["reference"]):
        assert {k for k in args_a if args_a[k] != args_b[k]} == {"fused_update"} and args_a["fused_update"] and not args_b["fused_update"]
        assert tensors_a.keys() == tensors_b.keys() and any(k.startswith("adversary/") for k in tensors_a)
        for k, a in tensors_a.items():
            b = tensors_b[k]
            assert torch.allclose(a, b, rtol=0, atol=1e-5) if a.is_floating_point() else torch.equal(a, b), k
    assert returns["fused"] == returns["reference"]
    assert all(max(step for step, _ in r) > 512 for r in returns["fused"])  # episodes of both iterations
