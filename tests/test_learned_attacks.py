"""Learned attacks (attacks/rs.py, sa_rl.py, pa_ad.py, ppo_adversary.py): eps ball on every step of a real rollout,
the victim untouched, PA-AD's actor follows the director, robust Sarsa's targets and attack, save/load and caching.
At the end, the reference attacks sa_rl_ref.py and pa_ad_ref.py (the published protocols; tests named *ref*)."""
import copy
import json
import os
import re
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import ROOT, one_line_error, run

import eval_attacks
from attacks import pa_ad, pa_ad_ref, ppo_adversary, rs, sa_rl, sa_rl_ref, uniform_like
from attacks.checkpoint import Policy, policy_hash
from attacks.pa_ad import PAADAttack
from attacks.pa_ad_ref import PAADRefAttack
from attacks.rs import RobustSarsaAttack
from attacks.sa_rl import SARLAttack
from attacks.sa_rl_ref import SARLRefAttack
from eval_attacks import evaluate

torch.set_num_threads(1)
ENV, OBS, ACT, EPS = "Hopper-v4", 11, 3, 0.075
TOL = 1e-6  # float32 rounding of x + delta (|x| <= 10) and of eps itself
TINY = {  # a couple of PPO iterations / a few TD epochs: seconds, enough to exercise every code path
    "sa_rl": (SARLAttack, dict(num_steps=256, num_minibatches=4), 512),
    "pa_ad": (PAADAttack, dict(num_envs=2, num_steps=128, num_minibatches=4), 512),
    "rs": (RobustSarsaAttack, dict(reg=0.1, epochs=3), 2000),
}


def make_policy(seed=0, activation="tanh", obs_dim=OBS, act_dim=ACT):
    """A random (untrained) victim in the checkpoint layout, loaded by the same class as real checkpoints."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for prefix, out in (("actor/", act_dim), ("critic/", 1)):
        sizes = (obs_dim, 64, 64, out)
        for i in range(3):
            w = torch.empty(sizes[i + 1], sizes[i])
            nn.init.orthogonal_(w, 1.0 if i == 2 else np.sqrt(2), generator=g)
            tensors[f"{prefix}layers.{i}.weight"] = w
            tensors[f"{prefix}layers.{i}.bias"] = 0.1 * torch.randn(sizes[i + 1], generator=g)
    tensors["actor/log_std"] = torch.full((act_dim,), -0.5)
    tensors["obs_norm/mean"] = 0.1 * torch.randn(obs_dim, generator=g).double()
    tensors["obs_norm/var"] = (1.0 + torch.rand(obs_dim, generator=g)).double()
    tensors["obs_norm/count"] = torch.tensor(100.0, dtype=torch.float64)
    meta = dict(format=1, script="test", env_id=ENV, obs_dim=obs_dim, act_dim=act_dim, hidden_sizes=[64, 64], activation=activation,
                obs_clip=10.0, norm_eps=1e-8, epsilon=None, global_step=0, args={}, git_commit=None)
    return Policy(tensors, meta)


@pytest.fixture(scope="module")
def victim():
    return make_policy()


@pytest.fixture(scope="module")
def fitted(victim):
    """Each learned attack after a tiny fit; the victim's hash is checked unchanged by every fit."""
    out = {}
    for name, (cls, settings, steps) in TINY.items():
        before = policy_hash(victim)
        out[name] = cls(victim, EPS, **settings).fit(ENV, steps, seed=1)
        assert policy_hash(victim) == before, f"{name}.fit changed the victim"
    return out


def obs_batch(n=64, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, OBS)).astype(np.float32))


@pytest.mark.parametrize("name", list(TINY))
def test_eps_ball_on_every_step_and_victim_untouched(victim, fitted, name):
    attack, before, calls = fitted[name], policy_hash(victim), []
    if name == "sa_rl":  # a barely trained adversary barely perturbs: saturate its tanh to test the ball's surface
        attack = copy.deepcopy(attack)
        with torch.no_grad():
            attack.agent.actor.layers[-1].weight.mul_(1e4)
            attack.agent.actor.layers[-1].bias.mul_(1e4)

    def recording(x, gens):
        x0 = x.clone()
        x_hat = attack(x, gens)
        assert torch.equal(x, x0), "the attack modified its input"
        assert x_hat.shape == x.shape and x_hat.dtype == torch.float32
        calls.append(float((x_hat - x).abs().max()))
        return x_hat

    returns = evaluate(victim, ENV, episodes=2, seed=0, num_envs=2, attack=recording)
    assert len(returns) == 2 and len(calls) >= 5
    assert max(calls) <= EPS + TOL, max(calls)
    assert min(calls) >= (EPS if name == "sa_rl" else 0.1 * EPS) - TOL  # it perturbs (sign steps: multiples of eps/10)
    assert policy_hash(victim) == before
    # batched == one by one: the same returns, bit for bit, with the episodes run one at a time
    np.testing.assert_array_equal(evaluate(victim, ENV, episodes=2, seed=0, num_envs=1, attack=attack), returns)


@pytest.mark.parametrize("name", list(TINY))
def test_batched_equals_one_by_one(fitted, name):
    x = obs_batch(16, seed=3)
    batched = fitted[name](x, None)
    single = torch.cat([fitted[name](x[i:i + 1], None) for i in range(16)])
    assert torch.equal(batched, single)


def test_attack_before_fit_is_an_error(victim):
    for cls, settings, _ in TINY.values():
        with pytest.raises(RuntimeError, match="fit"):
            cls(victim, EPS, **settings)(obs_batch(2), None)


# ---- PA-AD: the actor realizes the director's direction ----


class Fixed(nn.Module):
    """A director that plays given raw actions (one row per observation)."""

    def __init__(self, raw):
        super().__init__()
        self.raw = raw

    def forward(self, x):
        return self.raw[: x.shape[0]]


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_pa_ad_moves_the_action_toward_the_direction(activation, monkeypatch):
    victim = make_policy(seed=5, activation=activation)
    before = policy_hash(victim)
    x = obs_batch(128, seed=1)
    g = torch.Generator().manual_seed(2)
    raw = torch.randn(128, ACT, generator=g)
    d = pa_ad.directions(raw)
    assert torch.allclose(d.norm(dim=1), torch.ones(128))

    # the full attack with a director that plays `raw`
    attack = PAADAttack(victim, EPS)
    monkeypatch.setattr(pa_ad, "forward_invariant", lambda mlp, x_: mlp(x_))
    attack.agent.actor = Fixed(raw)
    attack.fitted = True
    x_hat = attack(x, None)
    assert (x_hat - x).abs().max() <= EPS + TOL
    with torch.no_grad():
        mu = victim.actor(x)
        along = ((victim.actor(x_hat) - mu) * d).sum(1)
        noise = EPS * (2 * torch.rand(x.shape, generator=g) - 1)
        along_random = ((victim.actor(x + noise) - mu) * d).sum(1)
    assert (along > 0).float().mean() >= 0.98, along
    assert (along > along_random).float().mean() >= 0.95
    assert along.mean() > 3 * along_random.abs().mean()
    # an opposite direction moves the action the other way
    attack.agent.actor = Fixed(-raw)
    with torch.no_grad():
        assert (((victim.actor(attack(x, None)) - mu) * d).sum(1) < 0).float().mean() >= 0.98
    assert policy_hash(victim) == before

    # the numpy PGD used in training is the same computation
    weights, act = ppo_adversary.numpy_weights(victim.actor)
    delta_np = pa_ad.numpy_pgd_along(weights, act, x.numpy(), d.numpy(), EPS)
    delta_t = pa_ad.pgd_along(victim.actor, x, d, EPS)
    same = np.all(np.abs(delta_np - delta_t.numpy()) <= 1e-6, axis=1)
    assert same.mean() >= 0.97, same.mean()


# ---- robust Sarsa ----


def test_sarsa_targets_by_hand():
    def q(x, a):  # a known Q: 2 * sum(x) + sum(a)
        return 2 * x.sum(1) + a.sum(1)

    r = torch.tensor([1.0, 2.0, 3.0])
    x2 = torch.tensor([[1.0, 0.0], [0.5, 0.5], [7.0, 7.0]])
    a2 = torch.tensor([[1.0], [-1.0], [9.0]])
    terminal = torch.tensor([0.0, 0.0, 1.0])  # row 1 may be a time-limit truncation: it still bootstraps
    y = rs.sarsa_targets(q, r, x2, a2, terminal, gamma=0.9)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 3.0, 2.0 + 0.9 * 1.0, 3.0]))


def test_sarsa_data_uses_the_true_successor(victim, monkeypatch):
    make = gym.make
    monkeypatch.setattr(gym, "make", lambda env_id, **kw: make(env_id, max_episode_steps=7, **kw))  # force truncations
    N, seed = 2, 3
    data = rs.collect(victim, ENV, 200, seed, num_envs=N)
    x, a, x2, a2, term = data["x"], data["a"], data["x2"], data["a2"], data["terminal"]
    assert x.shape == (200, OBS) and a.shape == (200, ACT) and data["r"].shape == (200,)
    # where the episode goes on, the successor (and its action) is the next row of the same env
    goes_on = np.all(x2[:-N] == x[N:], axis=1)
    assert np.all(a2[:-N][goes_on] == a[N:][goes_on])
    ended = ~goes_on
    assert np.all(term[:-N][goes_on] == 0)
    assert np.all(ended[term[:-N] == 1])  # a termination ends the episode
    assert (ended & (term[:-N] == 0)).sum() > 0  # time-limit truncations happened, and are not terminal
    # replay env 0 from its seed with the recorded actions: x2 is the true next observation, final ones included
    env = make(ENV, max_episode_steps=7)
    normalize = victim.obs_norm.normalize_np
    o = env.reset(seed=seed)[0]
    low, high = env.action_space.low, env.action_space.high
    for row in range(0, 60, N):
        np.testing.assert_array_equal(x[row], normalize(o[None])[0])
        o, r, terminated, truncated, _ = env.step(np.clip(a[row], low, high))
        np.testing.assert_array_equal(x2[row], normalize(o[None])[0])
        assert data["r"][row] == np.float32(r) and term[row] == float(terminated)
        if terminated or truncated:
            o = env.reset()[0]
    env.close()


def test_rs_attack_lowers_q(victim, fitted):
    attack = fitted["rs"]
    x = torch.from_numpy(rs.collect(victim, ENV, 256, seed=7, num_envs=2)["x"])
    with torch.no_grad():
        q_clean = attack.q(x, victim.actor(x))
        x_hat = attack(x, None)
        q_attacked = attack.q(x, victim.actor(x_hat))
    assert (x_hat - x).abs().max() <= EPS + TOL
    assert (q_attacked < q_clean).float().mean() >= 0.95
    assert q_attacked.mean() < q_clean.mean()


def test_rs_grid_builds(victim):
    for settings in rs.RS_GRID:
        assert RobustSarsaAttack(victim, EPS, **settings).settings["reg"] == settings["reg"]
    assert len({s["reg"] for s in rs.RS_GRID}) == len(rs.RS_GRID) >= 2


# ---- save / load / cache ----


@pytest.mark.parametrize("name", list(TINY))
def test_save_load_round_trip_bit_for_bit(victim, fitted, name, tmp_path):
    cls, settings, _ = TINY[name]
    path = str(tmp_path / f"{name}.safetensors")
    fitted[name].save(path)
    loaded = cls(victim, EPS, **settings).load(path)
    x = obs_batch(32, seed=4)
    assert torch.equal(fitted[name](x, None), loaded(x, None))
    # not for another victim, another eps, or another attack
    with pytest.raises(ValueError, match="another victim"):
        cls(make_policy(seed=9), EPS, **settings).load(path)
    with pytest.raises(ValueError, match="eps"):
        cls(victim, 2 * EPS, **settings).load(path)
    other = "rs" if name != "rs" else "sa_rl"
    with pytest.raises(ValueError, match="not"):
        TINY[other][0](victim, EPS, **TINY[other][1]).load(path)


def test_cache_path():
    h = "ab" * 32
    p = ppo_adversary.cache_path("zoo/v.safetensors", h, "rs", dict(reg=0.1, steps=10, seed=0))
    assert p.startswith("zoo/v.safetensors.attacks/rs-") and p.endswith(".safetensors")
    assert len(os.path.basename(p)) == len("rs-") + 16 + len(".safetensors")
    assert p == ppo_adversary.cache_path("zoo/v.safetensors", h, "rs", dict(seed=0, steps=10, reg=0.1))  # key order
    assert p != ppo_adversary.cache_path("zoo/v.safetensors", h, "rs", dict(reg=1.0, steps=10, seed=0))
    assert p != ppo_adversary.cache_path("zoo/v.safetensors", "cd" * 32, "rs", dict(reg=0.1, steps=10, seed=0))


@pytest.mark.parametrize("name", ["sa_rl", "pa_ad"])
def test_fit_or_load_fits_once(victim, name, tmp_path, monkeypatch):
    cls, settings, steps = TINY[name]
    victim_path = str(tmp_path / "victim.safetensors")
    first = cls(victim, EPS, **settings)
    cache = ppo_adversary.cache_path(victim_path, policy_hash(victim), name, dict(first.settings, steps=steps, seed=0))
    assert ppo_adversary.fit_or_load(first, cache, ENV, steps, seed=0) is False
    assert os.path.isfile(cache) and not [f for f in os.listdir(os.path.dirname(cache)) if ".tmp" in f]

    second = cls(victim, EPS, **settings)

    def no_fit(*args, **kwargs):
        raise AssertionError("fit called although the cache exists")

    monkeypatch.setattr(second, "fit", no_fit)
    assert ppo_adversary.fit_or_load(second, cache, ENV, steps, seed=0) is True
    x = obs_batch(32, seed=5)
    assert torch.equal(first(x, None), second(x, None))


def test_numpy_copies_match_torch(victim):
    x = np.random.default_rng(0).normal(0.0, 3.0, size=(50, OBS)) * 5
    np.testing.assert_array_equal(ppo_adversary.numpy_normalizer(victim.obs_norm)(x), victim.obs_norm.normalize_np(x))
    xt = torch.from_numpy(victim.obs_norm.normalize_np(x))
    np.testing.assert_allclose(ppo_adversary.numpy_mlp(victim.actor)(xt.numpy()), victim.actor(xt).numpy(), atol=1e-5)


def test_fit_is_deterministic(victim):
    cls, settings, steps = TINY["sa_rl"]
    x = obs_batch(8)
    a = cls(victim, EPS, **settings).fit(ENV, 256, seed=4)
    b = cls(victim, EPS, **settings).fit(ENV, 256, seed=4)
    assert torch.equal(a(x, None), b(x, None))


def test_zoo_caches_are_found_with_attack_seed_0():
    """The zoo's caches were keyed when --seed (then 0) also seeded the fits: --attack-seed 0 must find every one,
    whatever the evaluation seed, and another attack seed none (they would train)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "zoo", "ppo_continuous__Hopper-v4.safetensors")

    def caches(**flags):
        args = eval_attacks.Args(model=(path,), **flags)
        model = eval_attacks.open_model(path, args)
        return [eval_attacks.attack_cache(model, name, attack, args) for name in ("rs", "sa_rl", "pa_ad")
                for _, attack in eval_attacks.make_attack(name, model.policy, model.epsilons[0], args)]

    assert len(caches()) == 5 and all(os.path.isfile(c) for c in caches())
    assert caches(seed=5) == caches()
    assert not any(os.path.exists(c) for c in caches(attack_seed=1))


def test_unwritable_cache_folder_is_an_error_before_anything_runs(monkeypatch, capsys):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "zoo", "ppo_continuous__Hopper-v4.safetensors")
    args = eval_attacks.Args(model=(path,), attacks=("sa_rl",), attack_seed=7)  # not cached: it would train
    model = eval_attacks.open_model(path, args)
    monkeypatch.setattr(eval_attacks.os, "access", lambda folder, mode: False)
    with pytest.raises(SystemExit) as e:
        eval_attacks.announce_fits([model], ["sa_rl"], args)
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {path}.attacks: cannot write the attack cache here (sa_rl ")


def test_fit_progress_lines(capsys):
    progress = ppo_adversary.FitProgress("lines", 100, "sa_rl")
    for _ in range(6):
        progress.update(15, victim_return="12")
    progress.update(10)
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    # a line each time the count passes a 10% mark, however the updates fall (15, 30, ..., 90, then 100)
    assert [line.split(" (")[0] for line in lines] == [f"sa_rl: {n}/100 steps" for n in (15, 30, 45, 60, 75, 90, 100)]
    assert lines[0].endswith(", victim return 12") and " steps/s, ETA " in lines[0]
    assert lines[-1].startswith("sa_rl: 100/100 steps (100%)")
    for mode in (None, False):
        quiet = ppo_adversary.FitProgress(mode, 100, "sa_rl")
        quiet.update(100)
        quiet.close()
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress must be"):
        ppo_adversary.FitProgress("loud", 100, "sa_rl")


def test_progress_mode_bar_on_a_terminal_lines_otherwise_flag_overrides(monkeypatch):
    for tty in (True, False):
        monkeypatch.setattr(eval_attacks.sys.stderr, "isatty", lambda: tty)
        args = eval_attacks.Args(model=("m",))
        assert eval_attacks.show_progress(args) == ("bar" if tty else "lines")
        assert eval_attacks.show_progress(eval_attacks.Args(model=("m",), progress=True)) == "bar"
        assert eval_attacks.show_progress(eval_attacks.Args(model=("m",), progress=False)) == "lines"


def test_rs_fit_reports_each_phase_under_its_label(victim, capsys):
    attack = RobustSarsaAttack(victim, EPS, reg=1.0, epochs=10)
    assert attack.label == "rs[reg=1.0]"
    attack.fit(ENV, 400, seed=0, progress="lines")
    err = capsys.readouterr().err
    assert err.count("rs[reg=1.0] collecting: ") == 10 and err.count("rs[reg=1.0] TD: ") == 10
    assert "rs[reg=1.0] TD: 20/20 updates (100%)" in err


# ---- the reference attacks: the published SA-RL (ATLA) and PA-AD protocols (opt-in, `--attacks ref`) ----

TINY_REF = {  # one or two PPO iterations of 256 steps in 1 env (the official adversaries' layout)
    "sa_rl_ref": (SARLRefAttack, dict(num_steps=256, num_minibatches=4), 512),
    "pa_ad_ref": (PAADRefAttack, dict(num_steps=256, num_minibatches=4), 512),
}
REF_MODULES = {"sa_rl_ref": sa_rl_ref, "pa_ad_ref": pa_ad_ref}


def gens_for(n, base=100):
    """One generator per row, row i seeded base + i (as evaluate() seeds episode i); pa_ad_ref draws its start here."""
    return [torch.Generator().manual_seed(base + i) for i in range(n)]


def capture_fit(monkeypatch, attack, steps=2048, seed=3):
    """Run attack.fit with the PPO trainer replaced by one that only keeps what it was given (the reference attacks fit
    through their base classes' fit, in sa_rl.py and pa_ad.py)."""
    got = {}

    def keep(agent, env_id, steps_, seed_, normalize, victim_action, cfg, progress=False, desc=""):
        got.update(steps=steps_, seed=seed_, victim_action=victim_action, cfg=cfg)
        return {}

    for module in (sa_rl, pa_ad):
        monkeypatch.setattr(module, "train_ppo", keep)
    attack.fit(ENV, steps, seed=seed)
    return got


@pytest.fixture(scope="module")
def fitted_ref(victim):
    """Each reference attack after a tiny fit; the victim's hash is checked unchanged by every fit."""
    out = {}
    for name, (cls, settings, steps) in TINY_REF.items():
        before = policy_hash(victim)
        out[name] = cls(victim, EPS, **settings).fit(ENV, steps, seed=1)
        assert policy_hash(victim) == before, f"{name}.fit changed the victim"
    return out


@pytest.mark.parametrize("name", list(TINY_REF))
def test_ref_eps_ball_on_every_step_and_victim_untouched(victim, fitted_ref, name):
    attack, before, deltas = fitted_ref[name], policy_hash(victim), []
    if name == "sa_rl_ref":  # a barely trained adversary barely perturbs: saturate it to reach the ball's surface
        attack = copy.deepcopy(attack)
        with torch.no_grad():
            attack.agent.actor.layers[-1].weight.mul_(1e4)
            attack.agent.actor.layers[-1].bias.mul_(1e4)

    def recording(x, gens):
        x0 = x.clone()
        x_hat = attack(x, gens)
        assert torch.equal(x, x0), "the attack modified its input"
        assert x_hat.shape == x.shape and x_hat.dtype == torch.float32
        deltas.append((x_hat - x).abs())
        return x_hat

    returns = evaluate(victim, ENV, episodes=2, seed=0, num_envs=2, attack=recording)
    assert len(deltas) >= 5
    at_eps = [(d - EPS).abs() <= TOL for d in deltas]
    for d, full in zip(deltas, at_eps):
        assert d.max() <= EPS + TOL, d.max()
        assert d.max() >= EPS - TOL  # it uses the budget on every step
        if name == "pa_ad_ref":  # one sign step of eps: each coordinate moves by exactly 0 or eps
            assert bool(((d <= TOL) | full).all()), d
    assert torch.cat([f.flatten() for f in at_eps]).float().mean() >= (0.99 if name == "pa_ad_ref" else 0.95)
    assert policy_hash(victim) == before
    # batched == one by one: the same returns, bit for bit, with the episodes run one at a time
    np.testing.assert_array_equal(evaluate(victim, ENV, episodes=2, seed=0, num_envs=1, attack=attack), returns)
    assert policy_hash(victim) == before


@pytest.mark.parametrize("name", list(TINY_REF))
def test_ref_batched_equals_one_by_one(fitted_ref, name):
    x = obs_batch(16, seed=3)
    batched = fitted_ref[name](x, gens_for(16))
    single = torch.cat([fitted_ref[name](x[i:i + 1], gens_for(1, base=100 + i)) for i in range(16)])
    assert torch.equal(batched, single)
    assert not torch.equal(batched, x)


def test_ref_attack_before_fit_is_an_error(victim):
    for cls, settings, _ in TINY_REF.values():
        with pytest.raises(RuntimeError, match="fit"):
            cls(victim, EPS, **settings)(obs_batch(2), gens_for(2))


def tiny_policy():
    """A small fixed victim, 4 -> 3 -> 2 tanh, whose last input does not reach the action (a zero column in the first
    layer): the gradient is exactly 0 there and nonzero elsewhere."""
    g = torch.Generator().manual_seed(11)
    w0 = torch.randn(3, 4, generator=g)
    w0[:, 3] = 0.0
    tensors = {"actor/layers.0.weight": w0, "actor/layers.0.bias": 0.1 * torch.randn(3, generator=g),
               "actor/layers.1.weight": torch.randn(2, 3, generator=g), "actor/layers.1.bias": torch.zeros(2),
               "actor/log_std": torch.zeros(2), "obs_norm/mean": torch.zeros(4, dtype=torch.float64),
               "obs_norm/var": torch.ones(4, dtype=torch.float64),
               "obs_norm/count": torch.tensor(1.0, dtype=torch.float64)}
    meta = dict(format=1, script="test", env_id=ENV, obs_dim=4, act_dim=2, hidden_sizes=[3], activation="tanh",
                obs_clip=10.0, norm_eps=1e-8, epsilon=None, global_step=0, args={}, git_commit=None)
    return Policy(tensors, meta)


def test_pa_ad_ref_one_sign_step_of_eps_from_the_clean_state_after_the_official_start(monkeypatch):
    victim = tiny_policy()
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    d = torch.randn(8, 2, generator=torch.Generator().manual_seed(2))
    attack = PAADRefAttack(victim, EPS)
    monkeypatch.setattr(pa_ad_ref, "forward_invariant", lambda mlp, x_: mlp(x_))
    attack.agent.actor = Fixed(d)  # the director's mean is d
    attack.fitted = True
    step, starts = pa_ad_ref.official_step, []

    def spy(actor, x_, d_, eps, noise):
        assert torch.equal(x_, x) and torch.equal(d_, d)
        starts.append(noise.clone())
        return step(actor, x_, d_, eps, noise)

    monkeypatch.setattr(pa_ad_ref, "official_step", spy)
    x_hat = attack(x, gens_for(8))

    # the official start: U(-eps/10, eps/10) on every coordinate, from the episode's generator
    (noise,) = starts
    assert torch.equal(noise, (EPS / 10) * uniform_like(x, gens_for(8)))
    assert EPS / 10 >= noise.abs().max() > 0.8 * EPS / 10

    # the official loss at the start, as the official code writes it (mean over the batch, CosineSimilarity module)
    at = noise.clone().requires_grad_(True)
    diff = victim.actor(x + at) - victim.actor(x)
    loss = -torch.mean(nn.CosineSimilarity()(diff, d) + torch.norm(diff, dim=1, p=2))
    (grad,) = torch.autograd.grad(loss, at)
    assert bool((grad[:, 3] == 0).all()) and bool((grad[:, :3] != 0).all())

    # ONE sign step (ascending that loss) of the whole budget, added to the clean x: the start is discarded
    delta = step(victim.actor, x, d, EPS, noise)
    assert torch.equal(delta, EPS * grad.sign())
    assert bool((delta[:, :3].abs() == torch.tensor(EPS)).all()) and bool((delta[:, 3] == 0).all())
    assert torch.equal(x_hat, x + delta)
    assert (x_hat - x - noise - delta).abs().max() > EPS / 20  # what keeping the start would have given differs


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_pa_ad_ref_numpy_realizer_used_in_training_matches_torch(activation):
    victim = make_policy(seed=5, activation=activation)
    x = obs_batch(128, seed=1)
    d = torch.randn(128, ACT, generator=torch.Generator().manual_seed(2))
    noise = (EPS / 10) * uniform_like(x, gens_for(128))
    delta_t = pa_ad_ref.official_step(victim.actor, x, d, EPS, noise).numpy()
    weights, act = ppo_adversary.numpy_weights(victim.actor)
    delta_np = pa_ad_ref.numpy_official_step(weights, act, x.numpy(), d.numpy(), EPS, noise.numpy())
    assert delta_np.dtype == np.float32 and set(np.unique(np.abs(delta_np))) <= {np.float32(0), np.float32(EPS)}
    same = np.all(delta_np == delta_t, axis=1)
    assert same.mean() >= 0.97, same.mean()
    # the hand-written gradient itself, in float64: the norm term's part is ~1e-3 of the cosine's here, below float32
    # rounding of the sum, so only a float64 comparison shows a wrong norm term (the signs above hardly would)
    actor64 = copy.deepcopy(victim.actor).double()
    x64, d64, at = x.double(), d.double(), noise.double().requires_grad_(True)
    diff = actor64(x64 + at) - actor64(x64)
    (cos_grad,) = torch.autograd.grad(torch.nn.functional.cosine_similarity(diff, d64).sum(), at, retain_graph=True)
    (norm_grad,) = torch.autograd.grad(diff.norm(dim=1).sum(), at)
    weights64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in weights]
    grad_np = pa_ad_ref.numpy_official_grad(weights64, act, x64.numpy(), d64.numpy(), at.detach().numpy())
    scale = float((cos_grad + norm_grad).abs().max())
    np.testing.assert_allclose(grad_np, (cos_grad + norm_grad).numpy(), rtol=1e-7, atol=1e-9 * scale)
    assert float(norm_grad.abs().max()) > 1e-4 * scale  # the norm term is well above that tolerance


def test_sa_rl_ref_squash_is_hardtanh_at_attack_and_training_time(victim, monkeypatch):
    raw = torch.tensor([[-3.0, -1.5, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 1.5, 3.0, 100.0]]).repeat(4, 1)
    attack = SARLRefAttack(victim, EPS)
    monkeypatch.setattr(sa_rl_ref, "forward_invariant", lambda mlp, x_: mlp(x_))
    attack.agent.actor = Fixed(raw)  # the adversary's mean is raw
    attack.fitted = True
    x = obs_batch(4)
    delta = attack.perturbation(x)
    beyond = raw.abs() >= 1
    assert torch.equal(delta[beyond], torch.sign(raw[beyond]) * EPS)  # exactly +-eps beyond +-1
    assert torch.equal(delta[~beyond], EPS * raw[~beyond])  # linear inside
    assert (delta - EPS * torch.tanh(raw)).abs().max() > 0.03 * EPS  # not tanh (tanh(1.5) eps = 0.905 eps)
    assert torch.equal(attack(x, None), x + delta)

    # training: the victim acts on x + eps * hardtanh(a) for the adversary's sampled a (and samples its own action)
    got = capture_fit(monkeypatch, SARLRefAttack(victim, EPS), seed=3)
    xn, a = x.numpy(), raw.numpy()
    z = ppo_adversary.victim_noise_rng(3).standard_normal((4, ACT)).astype(np.float32)
    std = np.exp(victim.actor.log_std.detach().float().numpy())
    expected = ppo_adversary.numpy_mlp(victim.actor)(xn + EPS * np.clip(a, -1.0, 1.0)) + std * z
    np.testing.assert_array_equal(got["victim_action"](xn, a), expected)


@pytest.mark.parametrize("name", list(TINY_REF))
def test_ref_training_sees_sampled_victim_actions(victim, name, monkeypatch):
    if name == "pa_ad_ref":  # no perturbation: what is left is the victim's own noise
        monkeypatch.setattr(pa_ad_ref, "numpy_official_step", lambda w, act, x, d, eps, noise: np.zeros_like(x))
    cls, settings, _ = TINY_REF[name]
    victim_action = capture_fit(monkeypatch, cls(victim, EPS, **settings))["victim_action"]
    x = obs_batch(64).numpy()
    a = np.zeros((64, OBS if name == "sa_rl_ref" else ACT), dtype=np.float32)  # sa_rl_ref: hardtanh(0) = 0
    mu = ppo_adversary.numpy_mlp(victim.actor)(x)
    std = np.exp(victim.actor.log_std.detach().numpy())
    z = np.stack([(victim_action(x, a) - mu) / std for _ in range(300)])  # [300, 64, ACT]
    assert not np.array_equal(z[0], z[1])  # a fresh draw at every step
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.02, (z.mean(), z.std())  # N(0, 1) times the victim's std


def test_ref_our_sa_rl_and_pa_ad_train_against_the_deterministic_victim(victim, monkeypatch):
    """The contrast that makes the test above discriminating: the non-reference attacks see the victim's mean."""
    x = obs_batch(8).numpy()
    got = capture_fit(monkeypatch, SARLAttack(victim, EPS, num_steps=256, num_minibatches=4))
    act = got["victim_action"](x, np.zeros((8, OBS), dtype=np.float32))
    np.testing.assert_array_equal(act, ppo_adversary.numpy_mlp(victim.actor)(x))
    monkeypatch.setattr(pa_ad, "numpy_pgd_along", lambda w, act_, x_, d, eps, n: np.zeros_like(x_))
    got = capture_fit(monkeypatch, PAADAttack(victim, EPS))
    act = got["victim_action"](x, np.ones((8, ACT), dtype=np.float32))
    np.testing.assert_array_equal(act, ppo_adversary.numpy_mlp(victim.actor)(x))


def test_ref_official_budgets_and_settings(victim, monkeypatch):
    assert pa_ad_ref.official_steps("Hopper-v4") == 976 * 2048 == 1_998_848
    assert pa_ad_ref.official_steps("Walker2d-v4") == pa_ad_ref.official_steps("HalfCheetah-v5") == 1_998_848
    assert pa_ad_ref.official_steps("Ant-v4") == 4882 * 2048 == 9_998_336
    assert sa_rl_ref.official_steps("Hopper-v4") == sa_rl_ref.official_steps("HalfCheetah-v4") == 488 * 2048 == 999_424
    assert sa_rl_ref.official_steps("Ant-v5") == 2441 * 2048 == 4_999_168
    args = eval_attacks.Args(model=("m",))
    assert eval_attacks.fit_steps("pa_ad_ref", args, "Hopper-v4") == 1_998_848
    assert eval_attacks.fit_steps("sa_rl_ref", args, "Ant-v4") == 4_999_168
    args = eval_attacks.Args(model=("m",), sa_rl_ref_steps=7000, pa_ad_ref_steps=5000)
    assert eval_attacks.fit_steps("sa_rl_ref", args, "Ant-v4") == 7000
    assert eval_attacks.fit_steps("pa_ad_ref", args, "Ant-v4") == 5000
    # a fit without a budget takes the official one (and 976 iterations of 1 env x 2048 steps for pa_ad_ref)
    for name, cls in (("pa_ad_ref", PAADRefAttack), ("sa_rl_ref", SARLRefAttack)):
        got = capture_fit(monkeypatch, cls(victim, EPS), steps=None)
        assert got["steps"] == REF_MODULES[name].official_steps(ENV)
        cfg = got["cfg"]
        assert (cfg.num_envs, cfg.num_steps, cfg.max_grad_norm, cfg.ent_coef) == (1, 2048, 0.0, 0.0)
    cfg = PAADRefAttack(victim, EPS).cfg  # the official README command: lr 3e-5 (policy and value), clip 0.4
    assert (cfg.learning_rate, cfg.clip_coef, cfg.anneal_lr) == (3e-5, 0.4, True)
    cfg = SARLRefAttack(victim, EPS).cfg  # one point of ATLA's grid
    assert (cfg.learning_rate, cfg.clip_coef, cfg.anneal_lr) == (3e-4, 0.2, True)
    assert PAADRefAttack(victim, EPS).start_steps == 10


def test_ref_attack_sets():
    assert eval_attacks.expand_attacks(["ref"]) == ["sa_rl_ref", "pa_ad_ref"]
    assert eval_attacks.expand_attacks(["all"]) == ["random", "critic", "mad", "rs", "sa_rl", "pa_ad"]
    assert eval_attacks.expand_attacks(["all", "ref", "pa_ad_ref"]) == eval_attacks.ALL + ["sa_rl_ref", "pa_ad_ref"]
    assert eval_attacks.expand_attacks(["pa_ad_ref", "fast"]) == ["pa_ad_ref", "random", "critic", "mad", "rs"]


@pytest.mark.parametrize("name", list(TINY_REF))
def test_ref_save_load_round_trip_bit_for_bit(victim, fitted_ref, name, tmp_path):
    cls, settings, _ = TINY_REF[name]
    path = str(tmp_path / f"{name}.safetensors")
    fitted_ref[name].save(path)
    loaded = cls(victim, EPS, **settings).load(path)
    x = obs_batch(32, seed=4)
    assert torch.equal(fitted_ref[name](x, gens_for(32)), loaded(x, gens_for(32)))
    with pytest.raises(ValueError, match="another victim"):
        cls(make_policy(seed=9), EPS, **settings).load(path)
    with pytest.raises(ValueError, match="eps"):
        cls(victim, 2 * EPS, **settings).load(path)
    # our attack of the same network shape refuses the reference attack's file, and the other way round
    ours = {"sa_rl_ref": SARLAttack, "pa_ad_ref": PAADAttack}[name]
    with pytest.raises(ValueError, match=f"holds a '{name}' attack, not '{ours.name}'"):
        ours(victim, EPS).load(path)
    other = str(tmp_path / "ours.safetensors")
    ours(victim, EPS).save(other)
    with pytest.raises(ValueError, match=f"holds a '{ours.name}' attack, not '{name}'"):
        cls(victim, EPS, **settings).load(other)


@pytest.mark.parametrize("name", list(TINY_REF))
def test_ref_fit_or_load_fits_once(victim, name, tmp_path, monkeypatch):
    cls, settings, steps = TINY_REF[name]
    victim_path = str(tmp_path / "victim.safetensors")
    first = cls(victim, EPS, **settings)
    cache = ppo_adversary.cache_path(victim_path, policy_hash(victim), name, dict(first.settings, steps=steps, seed=0))
    assert os.path.basename(cache).startswith(f"{name}-")
    assert ppo_adversary.fit_or_load(first, cache, ENV, steps, seed=0) is False and os.path.isfile(cache)
    second = cls(victim, EPS, **settings)
    monkeypatch.setattr(second, "fit", lambda *a, **k: pytest.fail("fit called although the cache exists"))
    assert ppo_adversary.fit_or_load(second, cache, ENV, steps, seed=0) is True
    x = obs_batch(32, seed=5)
    assert torch.equal(first(x, gens_for(32)), second(x, gens_for(32)))


ZOO_HOPPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo",
                          "ppo_continuous__Hopper-v4.safetensors")


def test_cli_attacks_ref_runs_exactly_the_two_trains_once_then_loads(tmp_path):
    path = str(tmp_path / "victim.safetensors")
    shutil.copy(ZOO_HOPPER, path)  # a copy, so that its attack cache starts empty
    flags = ["--model", path, "--attacks", "ref", "--episodes", 2, "--sa-rl-ref-steps", 256, "--pa-ad-ref-steps", 256]
    first = run("eval_attacks.py", *flags, "--json", tmp_path / "a.json")
    assert first.returncode == 0, first.stderr[-3000:]
    announced = (r"^will train: sa_rl_ref \(256 steps, ~\d+ s\), pa_ad_ref \(256 steps, ~\d+ s\) \(~\d+ s in all\); "
                 r"cached: none$")
    assert re.search(announced, first.stderr, re.M), first.stderr[-3000:]
    assert first.stderr.count(": trained and cached ") == 2
    assert sorted(f.split("-")[0] for f in os.listdir(path + ".attacks")) == ["pa_ad_ref", "sa_rl_ref"]
    assert "| model | env | eps | natural | sa_rl_ref | pa_ad_ref | worst | robustness |" in first.stdout
    second = run("eval_attacks.py", *flags, "--json", tmp_path / "b.json")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "will train: none; cached: sa_rl_ref, pa_ad_ref" in second.stderr and second.stderr.count(": loaded ") == 2
    a, b = (json.loads((tmp_path / f).read_text())["results"][0] for f in ("a.json", "b.json"))
    assert list(a["attacks"]) == ["sa_rl_ref", "pa_ad_ref"] and a["worst"]["attack"] in a["attacks"]
    assert all(len(a["attacks"][k]["returns"]) == 2 and a["attacks"][k]["returns"] == b["attacks"][k]["returns"]
               for k in a["attacks"])


def test_cli_ref_steps_must_be_positive():
    proc = run("eval_attacks.py", "--model", ZOO_HOPPER, "--attacks", "ref", "--pa-ad-ref-steps", 0)
    assert "--pa-ad-ref-steps must be positive" in one_line_error(proc)


# ---- fits side by side (ppo_adversary.train_ppo_many; eval_attacks.py fits several checkpoints' attacks this way) ----

ZOO_NAMES = ("ppo_continuous", "barppo", "sappo")
SMALL = dict(num_steps=256, num_minibatches=4, update_epochs=2)


def zoo_victims():
    from attacks.checkpoint import load_checkpoint

    return [load_checkpoint(os.path.join(ROOT, "zoo", f"{name}__{ENV}.safetensors"), env_id=ENV)[0] for name in ZOO_NAMES]


@pytest.mark.parametrize("name", ["sa_rl", "pa_ad_ref", "action_mix"])
def test_side_by_side_fits_end_where_fits_alone_do(name):
    """Two iterations of 2 epochs x 4 minibatches on three real victims: each fit side by side ends where its own
    fit() does, to float32 rounding (the plain train_ppo is the reference); both saw the same episodes."""
    from attacks.action_mix import ActionMixAttack

    make = {"sa_rl": lambda v: SARLAttack(v, EPS, **SMALL), "pa_ad_ref": lambda v: PAADRefAttack(v, EPS, **SMALL),
            "action_mix": lambda v: ActionMixAttack(v, 0.3, **SMALL)}[name]
    victims = zoo_victims()
    alone = [make(v).fit(ENV, 512, seed=4) for v in victims]
    together = [make(v) for v in victims]
    ppo_adversary.fit_many(together, ENV, 512, seed=4)
    for a, b in zip(alone, together):
        assert b.fitted and a.agent.state_dict().keys() == b.agent.state_dict().keys()
        for key, value in a.agent.state_dict().items():
            assert torch.allclose(value, b.agent.state_dict()[key], rtol=0, atol=1e-5), key
        assert np.allclose(a.log["episode_returns"], b.log["episode_returns"], rtol=1e-4)


def test_a_fit_side_by_side_is_the_same_whichever_fits_run_beside_it():
    """Seed and victim decide a fit side by side, not its company: ppo's and barppo's victims' fits are bit for bit the
    same in a group of three as in a pair, and barppo's alone (each fit its own parameters, Adam and random streams)."""
    from attacks.action_mix import ActionMixAttack

    victims = zoo_victims()
    three = [ActionMixAttack(v, 0.3, **SMALL) for v in victims]
    ppo_adversary.fit_many(three, ENV, 1024, seed=2)
    two = [ActionMixAttack(v, 0.3, **SMALL) for v in victims[1:]]
    ppo_adversary.fit_many(two, ENV, 1024, seed=2)
    one = [ActionMixAttack(victims[1], 0.3, **SMALL)]
    ppo_adversary.fit_many(one, ENV, 1024, seed=2)
    for a, b in zip(three[1:] + three[1:2], two + one):
        assert all(torch.equal(x, y) for x, y in zip(a.agent.state_dict().values(), b.agent.state_dict().values()))
        assert a.log["episode_returns"] == b.log["episode_returns"]


def test_cli_fits_several_checkpoints_side_by_side_then_loads(tmp_path):
    """eval_attacks.py with two checkpoints fits their action_mix adversaries together, caches both, and loads them on
    the next call; --no-batch-fits fits one after another."""
    for name in ZOO_NAMES[:2]:
        shutil.copy(os.path.join(ROOT, "zoo", f"{name}__{ENV}.safetensors"), tmp_path)
    models = [str(tmp_path / f"{name}__{ENV}.safetensors") for name in ZOO_NAMES[:2]]
    flags = ("--attacks", "action_mix", "--action-mix-steps", 2048, "--episodes", 2, "--progress", "False")
    first = run("eval_attacks.py", "--model", *models, *flags, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "action_mix: fitting 2 adversaries in one process on Hopper-v4" in first.stderr
    assert first.stderr.count("action_mix: trained and cached") == 2
    again = run("eval_attacks.py", "--model", *models, *flags, cwd=tmp_path, timeout=600)
    assert again.returncode == 0 and again.stderr.count("action_mix: loaded") == 2 and "in one process" not in again.stderr
    for model in models:
        shutil.rmtree(model + ".attacks")
    alone = run("eval_attacks.py", "--model", *models, *flags, "--no-batch-fits", cwd=tmp_path, timeout=600)
    assert alone.returncode == 0 and alone.stderr.count("action_mix: trained and cached") == 2 and "in one process" not in alone.stderr


def test_rs_side_by_side_fits_end_where_fits_alone_do(monkeypatch):
    """Robust Sarsa side by side (attacks.rs.fit_many): two real victims x RS_GRID as one stacked fit end where each
    Q's own fit() does to float32 rounding, and bit for bit as the same grid side by side without the other victim;
    each victim's rollouts are collected once; a fit that differs only in epsilon is the same Q, fitted once."""
    victims = zoo_victims()[:2]
    make = lambda eps=EPS: [RobustSarsaAttack(v, eps, epochs=2, **g) for v in victims for g in rs.RS_GRID]
    alone = [attack.fit(ENV, 1500, seed=5) for attack in make()]
    calls = []
    collect = rs.collect
    monkeypatch.setattr(rs, "collect", lambda *a, **k: calls.append(a[0]) or collect(*a, **k))
    together, twins = make(), make(2 * EPS)
    rs.fit_many(together + twins, ENV, 1500, seed=5)
    assert len(calls) == 2 and {policy_hash(p) for p in calls} == {policy_hash(v) for v in victims}
    for a, b, twin in zip(alone, together, twins):
        assert b.fitted and twin.fitted and b.reward_scale == a.reward_scale and twin.epsilon == 2 * EPS
        for key, value in a.q.state_dict().items():
            assert torch.allclose(value, b.q.state_dict()[key], rtol=0, atol=1e-5), (a.label, key)
            assert torch.equal(b.q.state_dict()[key], twin.q.state_dict()[key])
        assert np.allclose([e["td_loss"] for e in a.log], [e["td_loss"] for e in b.log], rtol=1e-4)
    assert any(not torch.equal(x, y) for x, y in zip(together[0].q.state_dict().values(), together[1].q.state_dict().values()))  # reg 0 vs 0.1
    company = [RobustSarsaAttack(victims[1], EPS, epochs=2, **g) for g in rs.RS_GRID]  # the second victim's grid on its own
    rs.fit_many(company, ENV, 1500, seed=5)
    for a, b in zip(company, together[len(rs.RS_GRID):]):  # bit for bit: a fit's company does not change it
        assert all(torch.equal(x, y) for x, y in zip(a.q.state_dict().values(), b.q.state_dict().values()))


def test_cli_fits_the_rs_grid_side_by_side_then_loads(tmp_path):
    shutil.copy(os.path.join(ROOT, "zoo", f"ppo_continuous__{ENV}.safetensors"), tmp_path)
    model = str(tmp_path / f"ppo_continuous__{ENV}.safetensors")
    flags = ("--model", model, "--attacks", "rs", "--rs-steps", 1024, "--episodes", 1, "--progress", "False", "--json", tmp_path / "rs.json")
    first = run("eval_attacks.py", *flags, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"rs: fitting {len(rs.RS_GRID)} Q functions in one process on {ENV}" in first.stderr
    labels = re.findall(r"^(rs\[reg=[\d.]+\]): trained and cached ", first.stderr, re.M)  # each Q's own line
    assert sorted(labels) == sorted(rs.label(g) for g in rs.RS_GRID) and len(os.listdir(model + ".attacks")) == len(rs.RS_GRID)
    again = run("eval_attacks.py", *flags, cwd=tmp_path, timeout=600)
    assert again.returncode == 0 and again.stderr.count("loaded") == len(rs.RS_GRID) and "in one process" not in again.stderr
    assert "rs" in json.loads((tmp_path / "rs.json").read_text())["results"][0]["attacks"]


def test_the_fit_estimate_takes_the_arena_s_own_rate(capsys):
    """The up-front estimate of an arena adversary's fit uses its arena's rate: an ant-sumo step costs about 3x a
    puck-sumo one (1M steps: ~21 min against ~8 min), not the MuJoCo action_mix rate."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for body, minutes in (("ant", 21), ("puck", 8)):
        path = os.path.join(root, "benchmark", "checkpoints", f"two_timescale_adv__benign__sumo-{body}__1.safetensors")
        args = eval_attacks.Args(model=(path,), attacks=("action_mix",), eps_pi=1.0, action_mix_steps=1_000_000, attack_seed=12345)
        eval_attacks.announce_fits([eval_attacks.open_model(path, args)], ["action_mix"], args)
        assert capsys.readouterr().err == f"will train: action_mix (1M steps, ~{minutes} min); cached: none\n"
