"""attacks/certificate.py: each norm against numpy, the surrogate's monotonicity under pruning (and the spectral
product's lack of it), the TV constant against the exact Gaussian TV, and the bounds against real and random
perturbations."""
import json
import math
import os
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from attacks.certificate import MaxDeviation, certificate, matrix_norms
from attacks.checkpoint import _MLP, load_checkpoint, read_checkpoint
from attacks.mad import MADAttack
from eval_attacks import evaluate


def random_policy(rng, sizes, activation="tanh", log_std=None, sparse=0.0):
    """A stand-in for a loaded checkpoint (policy.actor with .layers and .log_std), float64 so that rounding cannot
    blur a bound that is tight. `sparse`: fraction of weights zeroed before any pruning (nets that are already
    pruned must behave too)."""
    weights = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = rng.standard_normal((n_out, n_in)) * rng.uniform(0.1, 3.0)
        if rng.random() < 0.3:  # heavy tails: a few large entries decide the l1 / l_inf norms
            w = rng.standard_cauchy((n_out, n_in))
        weights.append(torch.from_numpy(w * (rng.random(w.shape) >= sparse)))
    biases = [torch.from_numpy(rng.standard_normal(n)) for n in sizes[1:]]
    actor = _MLP(weights, biases, activation, batch_invariant=False).double()
    log_std = log_std if log_std is not None else rng.uniform(-2, 1, sizes[-1])
    actor.log_std = torch.nn.Parameter(torch.from_numpy(log_std))
    actor.requires_grad_(False)
    return types.SimpleNamespace(actor=actor)


def random_sizes(rng, max_layers=3, max_width=8):
    return list(rng.integers(1, max_width + 1, size=rng.integers(2, max_layers + 2)))


def test_norms_match_numpy_and_torch():
    rng = np.random.default_rng(0)
    for _ in range(200):
        w = rng.standard_normal(tuple(rng.integers(1, 10, size=2)))
        w = w * (rng.random(w.shape) > rng.uniform(0, 0.6))  # some exact zeros, as pruned layers have
        n = matrix_norms(torch.from_numpy(w))
        np.testing.assert_allclose(n["frobenius"], np.linalg.norm(w, "fro"), rtol=1e-12)
        np.testing.assert_allclose(n["l1"], np.linalg.norm(w, 1), rtol=1e-12)  # numpy: max column abs sum
        np.testing.assert_allclose(n["linf"], np.linalg.norm(w, np.inf), rtol=1e-12)  # max row abs sum
        np.testing.assert_allclose(n["spectral"], np.linalg.norm(w, 2), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(n["spectral"], torch.linalg.svdvals(torch.from_numpy(w)).max().item(), rtol=1e-9)
        expected = min(np.linalg.norm(w, "fro"), math.sqrt(np.linalg.norm(w, 1) * np.linalg.norm(w, np.inf)))
        np.testing.assert_allclose(n["surrogate"], expected, rtol=1e-12)
        assert n["spectral"] <= n["surrogate"] * (1 + 1e-9)  # both terms of the min bound the spectral norm
        assert n["sparsity"] == (w == 0).sum() / w.size
    # l1 and l_inf are not swapped: a single row of ones has column sums 1 and row sum 5
    n = matrix_norms(torch.ones(1, 5))
    assert (n["l1"], n["linf"], n["surrogate"]) == (1.0, 5.0, math.sqrt(5))


def test_surrogate_never_increases_under_pruning():
    """Theorem 1: zeroing any entry, or any mask, of any layer never raises a layer's F, l1, l_inf norms nor the
    product of the min. 600 random nets (some already sparse, some heavy-tailed), three kinds of pruning."""
    rng = np.random.default_rng(1)
    decreased = 0
    for case in range(600):
        policy = random_policy(rng, random_sizes(rng), sparse=rng.choice([0.0, 0.3]))
        before = certificate(policy, 0.1)
        layers = policy.actor.layers
        kind = case % 3
        with torch.no_grad():
            if kind == 0:  # one entry of one layer
                w = layers[rng.integers(len(layers))].weight
                w[rng.integers(w.shape[0]), rng.integers(w.shape[1])] = 0
            elif kind == 1:  # a random mask on one layer
                w = layers[rng.integers(len(layers))].weight
                w.mul_(torch.from_numpy(rng.random(w.shape) >= rng.uniform(0, 1)))
            else:  # a random mask on every layer
                for layer in layers:
                    layer.weight.mul_(torch.from_numpy(rng.random(layer.weight.shape) >= rng.uniform(0, 1)))
        after = certificate(policy, 0.1)
        # 1e-12: summation order may differ once a term is gone; an increase from a wrong norm is far larger
        assert after["lipschitz_surrogate"] <= before["lipschitz_surrogate"] * (1 + 1e-12), case
        for a, b in zip(after["layers"], before["layers"]):
            for key in ("frobenius", "l1", "linf", "surrogate"):
                assert a[key] <= b[key] * (1 + 1e-12), (case, key)
        assert after["sparsity"] >= before["sparsity"]
        assert after["action_deviation_bound"] <= before["action_deviation_bound"] * (1 + 1e-12)
        decreased += after["lipschitz_surrogate"] < before["lipschitz_surrogate"] * (1 - 1e-9)
    assert decreased > 300  # the pruning did bite: the check is not trivially met by unchanged nets


def test_spectral_product_can_increase_under_pruning():
    """The spectral product is tighter but not monotone: zeroing an entry can raise ||W||_2 (first order, by
    -w_ij u_i v_j for the top singular pair (u, v), positive whenever w_ij u_i v_j < 0). Hence it is reported
    next to the surrogate and not instead of it."""
    w = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    pruned = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert matrix_norms(w)["spectral"] == pytest.approx(math.sqrt(2))
    assert matrix_norms(pruned)["spectral"] == pytest.approx((1 + math.sqrt(5)) / 2)  # 1.618 > 1.414
    assert matrix_norms(pruned)["surrogate"] <= matrix_norms(w)["surrogate"]
    # and on random nets: a seeded search finds single-entry prunings that raise the whole product
    rng = np.random.default_rng(2)
    found = 0
    for _ in range(50):
        policy = random_policy(rng, random_sizes(rng, max_width=6))
        before = certificate(policy, 0.1)
        w = policy.actor.layers[rng.integers(len(policy.actor.layers))].weight
        i, j = rng.integers(w.shape[0]), rng.integers(w.shape[1])
        with torch.no_grad():
            w[i, j] = 0
        after = certificate(policy, 0.1)
        if after["spectral_product"] > before["spectral_product"] * (1 + 1e-6):
            found += 1
            assert after["lipschitz_surrogate"] <= before["lipschitz_surrogate"] * (1 + 1e-12)
    assert found >= 3


def test_tv_constant_against_the_exact_gaussian_tv():
    """TV(N(m, S), N(m', S)) = 2 Phi(||S^(-1/2)(m - m')|| / 2) - 1 for diagonal S: our c = 1 / (sqrt(2 pi) sigma_min)
    bounds it and is tight for small shifts along sigma_min's axis (App. B's constant). Sec. 3.1's (sqrt(2 pi)
    lambda_min)^-1 = 1 / (sqrt(2 pi) sigma_min^2) is not a bound when sigma_min > 1."""

    def exact_tv(delta, sigma):
        return math.erf(np.linalg.norm(delta / sigma) / 2 / math.sqrt(2))  # 2 Phi(t / 2) - 1 = erf(t / (2 sqrt 2))

    # the closed form itself, in 1-D, against 0.5 * integral |p - q| on a fine grid
    grid = np.linspace(-30, 30, 600001)
    p, q = (np.exp(-0.5 * ((grid - m) / 1.7) ** 2) / (1.7 * math.sqrt(2 * math.pi)) for m in (0.0, 0.9))
    assert 0.5 * np.abs(p - q).sum() * (grid[1] - grid[0]) == pytest.approx(exact_tv(np.array([0.9]), 1.7), rel=1e-6)

    rng = np.random.default_rng(3)
    for _ in range(200):
        log_std = rng.uniform(-3, 2, size=rng.integers(1, 7))
        c = certificate(random_policy(rng, [2, len(log_std)], log_std=log_std), 0.1)["tv_constant"]
        sigma = np.exp(log_std)
        assert c == pytest.approx(1 / (math.sqrt(2 * math.pi) * sigma.min()), rel=1e-12)
        delta = rng.standard_normal(len(sigma)) * sigma.min() * rng.uniform(0.01, 5)
        assert exact_tv(delta, sigma) <= c * np.linalg.norm(delta) * (1 + 1e-12)
        small = np.eye(len(sigma))[sigma.argmin()] * 1e-4 * sigma.min()
        assert exact_tv(small, sigma) / (c * np.linalg.norm(small)) > 0.9999
    sigma, shift = np.array([2.0, 3.0]), np.array([0.01, 0.0])
    sec31 = 1 / (math.sqrt(2 * math.pi) * sigma.min() ** 2)
    assert exact_tv(shift, sigma) > sec31 * np.linalg.norm(shift)


def test_bound_holds_for_random_perturbations_on_random_nets():
    """||mu(x) - mu(x_hat)||_2 <= L~ eps sqrt(d) for x_hat anywhere in the l_inf ball (uniform and corner samples),
    and the bound is attained by a rank-1 linear layer with equal-magnitude right vector, so a missing sqrt(d)
    or a too-small surrogate would fail here."""
    rng = np.random.default_rng(4)
    for case in range(200):
        policy = random_policy(rng, random_sizes(rng), activation=("tanh", "relu")[case % 2])
        eps = rng.uniform(0.01, 1.0)
        cert = certificate(policy, eps)
        x = torch.from_numpy(rng.standard_normal((64, policy.actor.layers[0].in_features)) * 3)
        for delta in (rng.uniform(-1, 1, x.shape), np.sign(rng.standard_normal(x.shape))):
            dev = torch.linalg.vector_norm(policy.actor(x + eps * torch.from_numpy(delta)) - policy.actor(x), dim=-1)
            assert dev.max().item() <= cert["action_deviation_bound"] * (1 + 1e-9), case
            assert dev.max().item() <= cert["spectral_product"] * eps * math.sqrt(x.shape[1]) * (1 + 1e-9), case
    d, eps = 7, 0.3
    u, v = rng.standard_normal((3, 1)), np.sign(rng.standard_normal((1, d))) / math.sqrt(d)
    policy = random_policy(rng, [d, 3])
    with torch.no_grad():
        policy.actor.layers[0].weight.copy_(torch.from_numpy(u @ v))
    x = torch.from_numpy(rng.standard_normal((1, d)))
    dev = torch.linalg.vector_norm(policy.actor(x + eps * torch.from_numpy(np.sign(v))) - policy.actor(x)).item()
    assert dev == pytest.approx(certificate(policy, eps)["action_deviation_bound"], rel=1e-12)


def test_max_deviation_is_transparent_and_records_the_max():
    rng = np.random.default_rng(5)
    policy = random_policy(rng, [5, 8, 8, 2])
    x = torch.from_numpy(rng.standard_normal((6, 5)))
    attack = MADAttack(policy, 0.2)
    wrapped = MaxDeviation(MADAttack(policy, 0.2), policy)
    x_plain = attack(x, [torch.Generator().manual_seed(k) for k in range(6)])
    x_wrapped = wrapped(x, [torch.Generator().manual_seed(k) for k in range(6)])
    torch.testing.assert_close(x_wrapped, x_plain, rtol=0, atol=0)  # same perturbations, same generator draws
    expected = torch.linalg.vector_norm(policy.actor(x_plain) - policy.actor(x), dim=-1).max().item()
    assert wrapped.max == expected > 0 and wrapped.name == "mad"
    outputs = iter([x_plain, x + 0.1 * (x_plain - x)])  # a later, smaller perturbation must not lower the max
    shrinking = MaxDeviation(lambda x, gens: next(outputs), policy)
    shrinking(x, None)
    shrinking(x, None)
    assert shrinking.max == expected


def test_obs_dim_must_match_the_actor():
    policy = random_policy(np.random.default_rng(6), [4, 3, 2])
    assert certificate(policy, 0.1, obs_dim=4) == certificate(policy, 0.1)
    with pytest.raises(ValueError, match="obs_dim 5"):
        certificate(policy, 0.1, obs_dim=5)


@pytest.fixture(scope="module")
def hopper(root):
    return os.path.join(root, "zoo", "ppo_continuous__Hopper-v4.safetensors")


def test_pruned_checkpoint_reports_its_sparsity_exactly(hopper, tmp_path):
    """A checkpoint whose actor has known zeroed weights (seeded masks, different per layer) reports exactly that
    fraction, overall and per layer, after a save / load round trip; the critic's and biases' zeros do not count."""
    tensors, meta = read_checkpoint(hopper)
    dense, _ = load_checkpoint(hopper)
    rng = np.random.default_rng(7)
    zeros, total, per_layer = 0, 0, []
    for i, frac in enumerate((0.3, 0.0, 0.5)):
        w = tensors[f"actor/layers.{i}.weight"]
        assert (w == 0).sum() == 0  # the zoo agent is dense, so every zero below is ours
        mask = torch.from_numpy(rng.random(w.shape) >= frac)
        if frac == 0.0:  # a single pruned entry in the middle layer
            mask[3, 5] = False
        tensors[f"actor/layers.{i}.weight"] = (w * mask).contiguous()
        tensors[f"actor/layers.{i}.bias"] = torch.zeros_like(tensors[f"actor/layers.{i}.bias"])
        per_layer.append(int((~mask).sum()) / w.numel())
        zeros, total = zeros + int((~mask).sum()), total + w.numel()
    tensors["critic/layers.0.weight"] = torch.zeros_like(tensors["critic/layers.0.weight"])
    path = str(tmp_path / "pruned.safetensors")
    save_file(tensors, path, metadata={"robust_rl": json.dumps(meta)})
    policy, meta = load_checkpoint(path)
    cert = certificate(policy, 0.075, obs_dim=meta["obs_dim"])
    assert cert["sparsity"] == zeros / total > 0.05  # 300 of the 4992 actor weights
    assert [layer["sparsity"] for layer in cert["layers"]] == per_layer
    assert cert["layers"][1]["sparsity"] == 1 / (64 * 64)
    assert cert["lipschitz_surrogate"] < certificate(dense, 0.075)["lipschitz_surrogate"]


def test_mad_deviation_within_bound_on_zoo_hopper(hopper):
    """Real rollouts: the zoo's PPO Hopper agent, 2 episodes under MAD at eps 0.075. The largest action change
    MAD produced is positive and below the certified bound (and below the spectral one, also a valid bound)."""
    policy, meta = load_checkpoint(hopper)
    eps = 0.075
    cert = certificate(policy, eps, obs_dim=meta["obs_dim"])
    mad = MaxDeviation(MADAttack(policy, eps), policy)
    evaluate(policy, "Hopper-v4", episodes=2, seed=0, attack=mad)
    assert 0 < mad.max <= cert["action_deviation_bound"]
    assert mad.max <= cert["spectral_product"] * eps * math.sqrt(meta["obs_dim"])
    assert cert["sparsity"] == 0.0 and len(cert["layers"]) == 3
