"""two_timescale_adv.py --env-id sumo-puck|sumo-ant and the arena path of eval_attacks.py: every defense trains and
writes a checkpoint that eval_attacks reads (win / loss / draw rates summing to 1, eps_pi 0 = the natural row); the
coin hands agent 1 to the attacker eps_pi of the time; the benign policy stays frozen in phase 2; the attacker's
policy loss counts only its own steps; fictitious play draws from its reservoir; W2 (attacks/stealth.py) is 0 for
identical samples and shift^2 for shifted Gaussians; bad flags end with one line and status 2."""
import dataclasses
import glob
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import torch
from conftest import one_line_error, run, script_env

import eval_attacks
import two_timescale_adv as T
from attacks.stealth import stealth, wasserstein_1d

TINY = ("--env-id", "sumo-puck", "--benign-timesteps", 512, "--total-timesteps", 512, "--num-steps", 128, "--num-minibatches", 4,
        "--update-epochs", 2, "--eval-episodes", 0, "--progress", "False")
DEFENSES = ("two_timescale", "single", "none", "self_play", "fictitious_play")


def tensors(path):
    from safetensors.torch import load_file

    return load_file(path)


# ---- W2 and the stealth measure ----


def test_w2_is_zero_for_identical_samples_and_shift_squared_for_shifted_gaussians():
    rng = np.random.default_rng(0)
    x = rng.normal(size=5000)
    assert wasserstein_1d(x, x) == 0.0
    assert wasserstein_1d(x, x + 0.7) == pytest.approx(0.49, abs=1e-12)  # the same draws shifted: exactly shift^2
    # independent samples of N(0, 1) and N(0.7, 1), of other sizes: W2^2 = 0.49 up to sampling noise
    assert wasserstein_1d(rng.normal(size=40_000), rng.normal(0.7, 1.0, size=30_000)) == pytest.approx(0.49, abs=0.02)
    # p = 1 through the same quantile functions is scipy's W1, for samples of different sizes
    u, v = rng.normal(size=1000), rng.exponential(size=777)
    assert wasserstein_1d(u, v, p=1) == pytest.approx(scipy.stats.wasserstein_distance(u, v), rel=1e-12)
    with pytest.raises(ValueError):
        wasserstein_1d([], [1.0])


def test_stealth_ranks_features_by_variance_and_sums_their_w2():
    rng = np.random.default_rng(1)
    natural = rng.normal(size=(4000, 4)) * np.array([1.0, 3.0, 0.1, 2.0])
    attacked = natural + np.array([0.5, 0.0, 5.0, 0.0])  # feature 2 moves most, but its variance is the smallest
    out = stealth(natural, attacked, k=2, natural_halves=(natural[::2], natural[1::2]), exclude=[3])
    assert out["features"] == [1, 0] and out["excluded"] == [3]
    assert out["w2_squared"] == pytest.approx(0.25, abs=1e-9) and out["w2_squared_per_feature"] == pytest.approx([0.0, 0.25], abs=1e-9)
    assert 0 < out["floor"] < 0.05


# ---- the pieces of the training loop ----


def test_attacker_policy_loss_counts_only_its_own_steps():
    """adversary_loss: with no step of its own the attacker's actor gets no gradient at all, and what happened on the
    steps it did not act (its actions, their log-probs) does not change its actor's gradient; its critic learns from
    every step."""
    args = T.Args(hidden_sizes=(8, 8), init_std=1.0, clip_vloss=True, ent_coef=0.0)
    adversary = T.Adversary(5, 3, args, [torch.Generator().manual_seed(0)])
    g = torch.Generator().manual_seed(1)
    obs, actions = torch.randn(1, 64, 5, generator=g), torch.randn(1, 64, 3, generator=g)
    logprobs, advantages = torch.randn(1, 64, generator=g) - 3.0, torch.randn(1, 64, generator=g)
    returns, values = torch.randn(1, 64, generator=g), torch.randn(1, 64, generator=g)
    acted = (torch.rand(1, 64, generator=g) < 0.3).float()

    def grads(actions, logprobs, returns, acted):
        adversary.zero_grad()
        T.adversary_loss(adversary, obs, actions, logprobs, advantages, returns, values, acted, args)[0].sum().backward()
        return [p.grad.clone() for p in adversary.actor.parameters()], [p.grad.clone() for p in adversary.critic.parameters()]

    actor, critic = grads(actions, logprobs, returns, acted)
    assert any(a.abs().sum() > 0 for a in actor)
    other = acted == 0  # change everything the attacker's policy saw on the steps it did not act
    actor2, critic2 = grads(torch.where(other[..., None], actions + 5.0, actions), torch.where(other, logprobs - 1.0, logprobs),
                            torch.where(other, returns + 1.0, returns), acted)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(actor, actor2))
    assert any(not torch.allclose(a, b) for a, b in zip(critic, critic2))
    none, critic0 = grads(actions, logprobs, returns, torch.zeros_like(acted))
    assert all(torch.count_nonzero(a) == 0 for a in none) and any(c.abs().sum() > 0 for c in critic0)


def test_fictitious_pool_is_a_uniform_sample_of_every_iterate():
    rng = np.random.default_rng(0)
    kept = np.zeros(100)
    for _ in range(2000):  # 100 iterates through a pool of 10: each stays with probability 10 / 100
        pool = T.FictitiousPool(10)
        for t in range(100):
            pool.add(t, rng)
        assert len(pool.members) == 10 and pool.seen == 100
        kept[pool.members] += 1
    assert np.all(np.abs(kept / 2000 - 0.1) < 0.035)  # 5 binomial standard deviations
    pool = T.FictitiousPool(5)
    for t in range(3):
        pool.add(t, rng)
    draws = [pool.sample(rng) for _ in range(3000)]
    assert set(draws) == {0, 1, 2} and all(abs(draws.count(t) / 3000 - 1 / 3) < 0.04 for t in range(3))


def test_snapshot_acts_like_the_frozen_policy():
    """A fictitious-play opponent (a numpy snapshot on raw observations) plays the mean the checkpoint's policy plays."""
    args = T.Args(hidden_sizes=(16, 16), init_std=0.5, defense="none")
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    agent = T.Agent(15, 3, args, gens)
    agent.obs_norm.update(np.random.default_rng(0).normal(2.0, 3.0, size=(2, 50, 15)))
    raw = np.random.default_rng(1).normal(2.0, 3.0, size=15)
    for n in range(2):
        policy = agent.policy(n, args)
        expected = policy.actor(torch.from_numpy(policy.normalize(raw[None]))).detach().numpy()[0]
        np.testing.assert_allclose(T.snapshot_action(T.actor_snapshot(agent, n), raw, np.zeros(3, np.float32)), expected, atol=1e-5)


# ---- the arena evaluation ----


@pytest.fixture(scope="module")
def arena_policies():
    """An untrained victim and benign policy (the Policy objects eval_attacks builds from a sumo checkpoint)."""
    args = T.Args(hidden_sizes=(16, 16), init_std=1.0, defense="none")
    agent = T.Agent(15, 3, args, [torch.Generator().manual_seed(s) for s in (5, 6)])
    with torch.no_grad():
        for layer in agent.actor.layers:  # weights large enough to move the pucks (the init's last layer is tiny)
            layer.weight.mul_(30.0)
    return agent.policy(0, args), agent.policy(1, args)


def test_arena_evaluation_is_batch_invariant_and_the_coin_takes_eps_pi(arena_policies):
    from attacks.action_mix import ArenaActionMixAttack

    victim, benign = arena_policies
    attack = ArenaActionMixAttack(victim, benign, "sumo-puck", 0.3)
    attack.fitted = True  # an untrained adversary: its actions differ from the benign policy's
    one = eval_attacks.evaluate_arena(victim, benign, "sumo-puck", episodes=6, seed=3, num_envs=1, attack=attack)
    assert 0.27 < attack.taken / attack.decisions < 0.33  # a few thousand coins
    batched = eval_attacks.evaluate_arena(victim, benign, "sumo-puck", episodes=6, seed=3, attack=attack)
    assert np.array_equal(one, batched) and set(one) <= {-1, 0, 1}
    zero = ArenaActionMixAttack(victim, benign, "sumo-puck", 0.0)
    zero.fitted = True
    observations = []
    natural = eval_attacks.evaluate_arena(victim, benign, "sumo-puck", episodes=6, seed=3, observations=observations)
    assert np.array_equal(eval_attacks.evaluate_arena(victim, benign, "sumo-puck", episodes=6, seed=3, attack=zero), natural)
    assert len(observations) == 6 and all(o.ndim == 2 and o.shape[1] == 15 for o in observations)


def test_the_arena_adversary_is_paid_agent_1s_own_reward(arena_policies):
    """The env an arena adversary trains in hands train_ppo minus agent 1's reward (train_ppo pays the adversary minus
    it): with draws at 0, agent 1's own reward, shaping included, replayed step for step in a twin arena; not minus
    the victim's, which differs while the shaping is on."""
    from attacks.action_mix import SumoVersusVictim
    from envs.sumo import parallel_env

    victim, _ = arena_policies
    env, twin = SumoVersusVictim("puck", victim, total_steps=400, shaping_anneal=0.5), parallel_env("puck")
    _, obs, rng, differs = env.reset(seed=3), twin.reset_array(3), np.random.default_rng(0), False
    for t in range(60):
        a = rng.uniform(-1, 1, 3)
        v = np.clip(env.victim_mean(env.victim_normalize(obs[0][None]))[0], -1, 1)
        twin.set_shaping(max(0.0, 1 - t / 200))
        obs, (r0, r1), done = twin.step_array(np.stack([v, a]))
        o1, reward, terminated, _, _ = env.step(a)
        assert np.array_equal(o1, obs[1]) and terminated == done and reward == pytest.approx(-r1, abs=1e-12)
        differs |= abs(r1 + r0) > 1e-6
        if done:
            break
    assert differs


def test_arena_fits_side_by_side_end_where_fits_alone_do(arena_policies):
    """Two arena adversaries (each policy the other's victim, so the fits train in different arenas) fitted side by
    side end where each one's own fit() does and saw the same games: each fit keeps its own arena, benign opponent and
    shaping schedule. The weights agree to 1e-4 after two iterations (1.5e-5 seen: batched products round a last bit
    differently, and Adam's first steps are near lr whatever a gradient's size; later the rounding grows)."""
    from attacks import ppo_adversary
    from attacks.action_mix import ArenaActionMixAttack

    victim, benign = arena_policies
    small = dict(num_steps=256, num_minibatches=4, update_epochs=2)
    make = lambda: [ArenaActionMixAttack(victim, benign, "sumo-puck", 0.7, **small), ArenaActionMixAttack(benign, victim, "sumo-puck", 0.7, **small)]
    alone = [a.fit("sumo-puck", 512, seed=4) for a in make()]
    together = make()
    ppo_adversary.fit_many(together, "sumo-puck", 512, seed=4)
    for a, b in zip(alone, together):
        assert b.fitted and a.log["episode_returns"] and np.allclose(a.log["episode_returns"], b.log["episode_returns"], rtol=1e-4)
        for key, value in a.agent.state_dict().items():
            assert torch.allclose(value, b.agent.state_dict()[key], rtol=0, atol=1e-4), key
    # not vacuous: the two arenas taught different things
    assert not torch.allclose(alone[0].agent.actor.layers[0].weight, alone[1].agent.actor.layers[0].weight, atol=1e-3)


# ---- smoke runs (subprocesses) ----


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tiny runs of every defense: two_timescale trains phase 1 (self-play) and phase 2; the others start from its
    benign policy (--benign). Returns the folder and {defense: (run folder, checkpoint)}."""
    base = tmp_path_factory.mktemp("sumo")
    out = {}
    for defense in DEFENSES:
        cwd = base / defense
        cwd.mkdir()
        extra = () if defense == "two_timescale" else ("--benign", out["two_timescale"][0] / "benign.safetensors")
        proc = run("two_timescale_adv.py", *TINY, "--defense", defense, "--eps-pi", 0.3, "--pool-size", 2, *extra, cwd=cwd, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (path,) = glob.glob(str(cwd / "runs" / "sumo-puck__two_timescale_adv__1__*" / "two_timescale_adv.safetensors"))
        out[defense] = (type(base)(os.path.dirname(path)), path)
    return base, out


@pytest.mark.slow
def test_each_defense_writes_a_checkpoint_that_eval_attacks_reads(trained, tmp_path, capsys):
    from attacks.checkpoint import load_checkpoint

    _, runs = trained
    for defense, (folder, path) in runs.items():
        _, meta = load_checkpoint(path)
        keys = set(tensors(path))
        assert meta["env_id"] == "sumo-puck" and meta["args"]["defense"] == defense and meta["obs_dim"] == 15 and meta["act_dim"] == 3
        assert {"benign/actor.layers.0.weight", "benign/obs_norm.mean", "critic/layers.0.weight"} <= keys
        assert any(k.startswith("adversary/") for k in keys) == (defense in ("single", "two_timescale"))
    # eps_pi 0: the fresh attacker never acts, so its row is the natural row game for game
    args = eval_attacks.Args(model=tuple(p for _, p in runs.values()), attacks=("action_mix",), eps_pi=0.0, action_mix_steps=2048, episodes=8,
                             json=str(tmp_path / "eval.json"), progress=False)
    results = eval_attacks.main(args)["results"]
    assert [r["model"] for r in results] == list(args.model) and os.path.exists(tmp_path / "eval.json")
    captured = capsys.readouterr()
    assert f"action_mix: fitting {len(runs)} adversaries in one process on sumo-puck" in captured.err
    assert captured.out.count("certificate: Lipschitz surrogate") == len(runs) and "no observation budget" in captured.out
    for r in results:
        for row in (r["natural"], r["attacks"]["action_mix"]):
            assert row["win"] + row["loss"] + row["draw"] == pytest.approx(1.0) and len(row["returns"]) == 8
        assert r["attacks"]["action_mix"]["returns"] == r["natural"]["returns"] and r["attacks"]["action_mix"]["attacker_share"] == 0.0
        assert r["stealth"]["w2_squared"] == 0.0 and 14 not in r["stealth"]["features"]  # the clock is left out
        cert = r["certificate"]  # the victim's actor, without an observation budget
        assert cert["lipschitz_surrogate"] >= cert["spectral_product"] > 0 and cert["action_deviation_bound"] is None
    assert glob.glob(str(runs["none"][0] / "two_timescale_adv.safetensors.attacks" / "action_mix-*.safetensors"))  # cached


@pytest.mark.slow
def test_ant_sumo_trains_both_phases_and_evaluates(tmp_path):
    """The ant arena through the whole path: phase 1 (self-play) and phase 2 (two timescales), then eval_attacks.py's
    action_mix attacker and stealth measure on the victim."""
    proc = run("two_timescale_adv.py", "--env-id", "sumo-ant", "--benign-timesteps", 256, "--total-timesteps", 256, "--num-steps", 64,
               "--num-minibatches", 2, "--update-epochs", 1, "--eval-episodes", 0, "--progress", "False", "--defense", "two_timescale",
               cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = glob.glob(str(tmp_path / "runs" / "sumo-ant__two_timescale_adv__1__*" / "two_timescale_adv.safetensors"))
    (r,) = eval_attacks.main(eval_attacks.Args(model=(path,), attacks=("action_mix",), eps_pi=1.0, action_mix_steps=256, episodes=4, progress=False))["results"]
    assert r["env_id"] == "sumo-ant" and r["attacks"]["action_mix"]["attacker_share"] == 1.0
    for row in (r["natural"], r["attacks"]["action_mix"]):
        assert row["win"] + row["loss"] + row["draw"] == pytest.approx(1.0) and len(row["returns"]) == 4
    assert r["stealth"]["k"] == 10 and r["stealth"]["w2_squared"] >= 0


@pytest.mark.slow
def test_the_coin_gives_the_attacker_eps_pi_of_agent_1s_steps(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, runs = trained
    acc = EventAccumulator(glob.glob(str(runs["two_timescale"][0] / "events.out.tfevents.*"))[0])
    acc.Reload()
    phases = [e.value for e in acc.Scalars("charts/phase")]
    shares = [e.value for e, p in zip(acc.Scalars("adversary/share"), phases) if p == 2]
    assert phases == [1.0] * 4 + [2.0] * 4 and len(shares) == 4
    assert 0.2 < np.mean(shares) < 0.4  # 512 coins at 0.3: 4.9 binomial standard deviations
    assert [e.value for e in acc.Scalars("charts/shaping")] == [1.0, 0.5, 0.0, 0.0] * 2  # --shaping-anneal 0.5 of each phase
    pool = EventAccumulator(glob.glob(str(runs["fictitious_play"][0] / "events.out.tfevents.*"))[0])
    pool.Reload()
    assert [e.value for e in pool.Scalars("fictitious/pool_size")] == [1.0, 2.0, 2.0, 2.0]  # --pool-size 2


@pytest.mark.slow
def test_the_benign_policy_stays_frozen_in_phase_2(trained):
    _, runs = trained
    folder, path = runs["two_timescale"]
    phase1, final = tensors(folder / "benign.safetensors"), tensors(path)
    phase1 = {k: v for k, v in phase1.items() if not k.startswith("resume/")}  # what --resume needs, beside the policy
    assert sorted(k for k in phase1 if k.startswith(("actor/", "critic/", "obs_norm/"))) == sorted(phase1)
    for k, v in phase1.items():
        assert torch.equal(final["benign/" + k.replace("/", ".", 1)], v), k
    assert not torch.equal(final["actor/layers.0.weight"], phase1["actor/layers.0.weight"])  # the victim did move
    for defense in DEFENSES[1:]:  # the --benign runs carry the very same benign policy
        final = tensors(runs[defense][1])
        assert all(torch.equal(final["benign/" + k.replace("/", ".", 1)], v) for k, v in phase1.items())


@pytest.mark.slow
def test_benign_must_be_a_finished_phase_1_policy(trained, tmp_path, capsys):
    """--benign takes a run's benign.safetensors once phase 1 finished: a phase-2 victim (it holds benign/) and a save
    made before the end of phase 1 (metadata complete: false, as an interrupt or --save-every leaves) are refused;
    eval_attacks.py evaluates the unfinished save with a note."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    _, runs = trained
    folder, victim = runs["two_timescale"]
    with safe_open(str(folder / "benign.safetensors"), "pt") as f:
        meta, state = json.loads(f.metadata()["robust_rl"]), {k: f.get_tensor(k) for k in f.keys()}
    assert meta["complete"] is True
    partial = tmp_path / "partial.safetensors"
    save_file(state, str(partial), metadata={"robust_rl": json.dumps(dict(meta, complete=False))})
    for path, message in [(victim, "a phase-2 victim"), (partial, "did not finish")]:
        with pytest.raises(SystemExit) as e:
            T.resolve_args(T.Args(env_id="sumo-puck", benign=(str(path),)))
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and message in err[0], err
    T.resolve_args(T.Args(env_id="sumo-puck", benign=(str(folder / "benign.safetensors"),)))  # the finished one is taken
    # eval_attacks.py evaluates an unfinished save as asked, and says so (once, on stderr); a finished one without a word
    for path, noted in [(partial, True), (folder / "benign.safetensors", False)]:
        eval_attacks.main(eval_attacks.Args(model=(str(path),), attacks=("action_mix",), eps_pi=0.0, action_mix_steps=2048, episodes=2, progress=False))
        notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
        few = "note: 2 games per row; the protocol's sumo rates take 200 (a standard error <= 0.035)"  # said too
        assert notes == ([f"note: {path} was saved before its training phase finished (step {meta['global_step']})"] if noted else []) + [few], notes


@pytest.mark.slow
def test_phase_2_pays_the_attacker_adversary_reward_and_records_it(tmp_path, monkeypatch, capsys):
    """Every phase-2 step of every game pays the attacker env.adversary_reward() (phase 1, self-play, never asks for it);
    the checkpoint records that reward, and a phase-2 checkpoint without the record is not resumed."""
    import types

    from safetensors import safe_open
    from safetensors.torch import save_file

    from envs import sumo

    calls = []
    real = sumo.SumoEnv.adversary_reward
    monkeypatch.setattr(sumo.SumoEnv, "adversary_reward", lambda self: calls.append(1) or real(self))
    monkeypatch.setattr(T, "interrupt", types.SimpleNamespace(in_loop=False, signum=None, saved=None), raising=False)
    monkeypatch.chdir(tmp_path)
    args = T.resolve_args(T.Args(env_id="sumo-puck", benign_timesteps=512, total_timesteps=512, num_steps=128, num_minibatches=4,
                                 update_epochs=2, eval_episodes=0, progress=False, defense="two_timescale"))
    T.train_sumo(args)
    assert len(calls) == args.num_iterations * args.batch_size > 0
    (path,) = glob.glob(str(tmp_path / "runs" / "sumo-puck__two_timescale_adv__1__*" / "two_timescale_adv.safetensors"))
    with safe_open(path, framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    state = json.loads(meta["resume"])
    assert state["adversary_reward"] == T.ADVERSARY_REWARD == "own_shaping"
    del state["adversary_reward"]  # as a checkpoint of the code before the record
    save_file(tensors, path, metadata={**meta, "resume": json.dumps(state)})
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        T.train_sumo(*T.load_resume(T.Args(resume=path)))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "does not record its attacker's reward" in err[0]


def test_bad_sumo_flags_one_line_exit_2(tmp_path):
    assert "unknown sumo arena 'sumo-frog'" in one_line_error(run("two_timescale_adv.py", "--env-id", "sumo-frog", cwd=tmp_path, timeout=60))
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize("changes,message", [
    (dict(shaping_anneal=1.5), "--shaping-anneal"),
    (dict(defense="min_oracle"), "not run on the sumo arena"),
    (dict(benign=("nowhere.safetensors",)), "no such file"),
    (dict(benign=("a", "b", "c"), num_seeds=2), "one per seed"),
    (dict(exp_name="benign"), "--exp-name benign"),
    (dict(epsilon=0.1), "--eps-pi"),
    (dict(env_id="Hopper-v4", defense="self_play"), "sumo arena"),
    (dict(env_id="kuhn", defense="fictitious_play"), "sumo arena"),
])
def test_bad_flags_in_process(capsys, changes, message):
    args = dataclasses.replace(T.Args(env_id="sumo-puck"), **changes)
    with pytest.raises(SystemExit) as e:
        T.resolve_args(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]


@pytest.mark.slow
def test_eval_attacks_refuses_observation_attacks_and_other_envs_on_arena_checkpoints(trained, capsys):
    _, runs = trained
    path = runs["none"][1]
    for changes, message in [(dict(attacks=("fast",)), "action_mix only"), (dict(env_id="sumo-ant"), "not sumo-ant"),
                             (dict(env_id="Hopper-v4"), "checkpoint is for sumo-puck"), (dict(epsilons=(0.1,)), "--eps-pi"),
                             (dict(model=(path, path), gif="game.gif"), "give one --model")]:
        with pytest.raises(SystemExit) as e:
            eval_attacks.main(eval_attacks.Args(**{"model": (path,), "attacks": ("action_mix",), **changes}))
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and err[-1].startswith("error: ") and message in err[-1], err


# ---- interrupt and resume ----

RESUME = ("--env-id", "sumo-puck", "--benign-timesteps", 768, "--total-timesteps", 768, "--num-steps", 128, "--num-minibatches", 4,
          "--update-epochs", 2, "--eval-episodes", 0, "--progress", "False", "--save-every", 0, "--pool-size", 3)  # 6 iterations a phase


def read_all(path):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        state = json.loads(meta["resume"])
        # the sibling seeds' folder names hold the start time
        return {**meta, "resume": {k: v for k, v in state.items() if k != "group"}}, {k: f.get_tensor(k) for k in f.keys()}


def assert_same_checkpoints(refs, paths):
    assert len(refs) == len(paths) > 0
    for ref, path in zip(refs, paths):
        (meta_a, tensors_a), (meta_b, tensors_b) = read_all(ref), read_all(path)
        assert meta_a == meta_b
        assert tensors_a.keys() == tensors_b.keys() and any(k.startswith("resume/env/") for k in tensors_a)
        for k in tensors_a:
            assert torch.equal(tensors_a[k], tensors_b[k]), (path, k)


@pytest.mark.slow
@pytest.mark.parametrize("defense,seeds,phase,sig", [("fictitious_play", 2, 2, signal.SIGINT), ("two_timescale", 1, 1, signal.SIGTERM),
                                                      ("two_timescale", 2, 2, signal.SIGTERM)])
def test_sumo_interrupt_saves_and_resume_is_bit_identical(tmp_path, root, defense, seeds, phase, sig):
    """Signal a sumo run after its second iteration of phase 1 or 2: it saves every seed (benign.safetensors in phase 1,
    the victim in phase 2) and exits 128 + signum with one line naming the file to resume; --resume then ends with
    checkpoints of both phases equal, tensor for tensor (weights, benign policy, attacker, Adam, RNGs, the arenas
    mid-game, the fictitious pool of 3 that has replaced members and the opponents drawn from it) and in their metadata,
    to an uninterrupted run's. A run whose phase 1 had finished resumes from benign.safetensors into a fresh phase 2."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    flags = (*RESUME, "--defense", defense, "--eps-pi", 0.5, "--num-seeds", seeds)
    full = run("two_timescale_adv.py", *flags, cwd=tmp_path / "a", timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]
    proc = subprocess.Popen([sys.executable, os.path.join(root, "two_timescale_adv.py"), *map(str, flags)], cwd=tmp_path / "b",
                            env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith(f"phase {phase} iter 2/6"):
            proc.send_signal(sig)
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err
    name = "benign" if phase == 1 else "two_timescale_adv"
    paths = sorted(glob.glob(str(tmp_path / "b" / "runs" / "*" / f"{name}.safetensors")))
    assert len(paths) == seeds
    rel = os.path.relpath(paths[0], tmp_path / "b")
    saved = re.escape(rel) + (f" and the other {seeds - 1} seeds'" if seeds > 1 else "")
    # the signal lands in iteration 3 at the latest; phase 2 counts on from phase 1's 768 steps
    steps = "(256|384)" if phase == 1 else "(1024|1152)"
    m = re.fullmatch(rf"interrupted at step {steps} \(phase {phase}\); saved {saved}; resume with --resume {re.escape(rel)}", err.strip().splitlines()[-1])
    assert m, err[-2000:]
    resumed = run("two_timescale_adv.py", "--resume", rel, "--eval-episodes", 0, "--progress", "False", "--save-every", 0, cwd=tmp_path / "b", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed {rel} at step {m.group(1)} (phase {phase})" in resumed.stdout
    for name in ("benign", "two_timescale_adv"):  # the folders sort by seed
        assert_same_checkpoints(sorted(glob.glob(str(tmp_path / "a" / "runs" / "*" / f"{name}.safetensors"))),
                                sorted(glob.glob(str(tmp_path / "b" / "runs" / "*" / f"{name}.safetensors"))))
    again = run("two_timescale_adv.py", "--resume", rel, cwd=tmp_path / "b", timeout=60)
    if phase == 1:  # the run is in phase 2 now: the benign file is not where it continues
        assert "resume it with --resume" in one_line_error(again)
    else:
        assert again.returncode == 0 and "the run already finished" in again.stdout
    if phase == 1:  # phase 1 had finished and phase 2 left no checkpoint (killed): phase 2 starts as it did
        victims = sorted(glob.glob(str(tmp_path / "b" / "runs" / "*" / "two_timescale_adv.safetensors")))
        for path in victims:
            os.remove(path)
        benign = os.path.relpath(sorted(glob.glob(str(tmp_path / "b" / "runs" / "*" / "benign.safetensors")))[0], tmp_path / "b")
        resumed = run("two_timescale_adv.py", "--resume", benign, "--eval-episodes", 0, "--progress", "False", "--save-every", 0, cwd=tmp_path / "b", timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert_same_checkpoints(sorted(glob.glob(str(tmp_path / "a" / "runs" / "*" / "two_timescale_adv.safetensors"))), victims)
