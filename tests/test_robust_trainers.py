"""sappo.py, arppo.py, barppo.py: inner loops, robust losses, gradient flow, smoke runs, bad input.

The smoke runs (subprocesses, a few seconds each) are marked `slow`: `pytest -m "not slow"` skips them.
"""
import concurrent.futures
import glob
import importlib
import math
import os
import re

import pytest
import torch
from conftest import one_line_error, run

from attacks.checkpoint import load_checkpoint

SCRIPTS = ["sappo", "arppo", "barppo"]
SGLD_SCRIPTS = ["sappo", "barppo"]
OBS_DIM, ACT_DIM, BATCH, EPS, CLIP, ENT = 11, 3, 64, 0.075, 0.2, 0.01


def module(name):
    return importlib.import_module(name)


def make_agent(mod, activation="tanh", seed=0, seeds=1):
    """A fresh agent (`seeds` stacked seeds) whose mean head is scaled up (a fresh one outputs ~0.01: every objective
    would be tiny). Every tensor is [seeds, ...]; the tests below use one seed unless they test the stacking."""
    agent = mod.Agent(OBS_DIM, ACT_DIM, mod.Args(init_std=0.5, activation=activation), [torch.Generator().manual_seed(seed + n) for n in range(seeds)])
    with torch.no_grad():
        agent.actor.layers[-1].weight.mul_(100.0)
        agent.actor.log_std.copy_(torch.tensor([0.3, 0.6, 1.2]).log().expand(seeds, ACT_DIM))  # unequal stds: the 1/std^2 weighting matters
    return agent


def make_batch(agent, seed=1):
    """Normalized observations [N, B, obs], stored actions, their old log-probs (at the clean states) and normalized
    advantages, for each of the agent's N seeds."""
    g = torch.Generator().manual_seed(seed)
    n = agent.actor.log_std.shape[0]
    x = torch.randn(n, BATCH, OBS_DIM, generator=g) * 2
    with torch.no_grad():
        actions = agent.actor(x) + agent.actor.log_std.exp().unsqueeze(1) * torch.randn(n, BATCH, ACT_DIM, generator=g)
        _, old_logprobs, _, _ = agent.get_action_and_value(x, actions)
        old_logprobs = old_logprobs + 0.2 * torch.randn(n, BATCH, generator=g)  # the policy moved since the rollout
    adv = torch.randn(n, BATCH, generator=g)
    return x, actions, old_logprobs, (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)


def attack(mod, agent, x, actions, old_logprobs, adv, eps, seed=2):
    gens = [torch.Generator().manual_seed(seed + n) for n in range(x.shape[0])]
    if mod.__name__ == "arppo":
        return mod.pgd_surrogate_attack(agent, x, actions, old_logprobs, adv, CLIP, eps, 10, 0.1, generators=gens)
    return mod.sgld_kl_attack(agent, x, eps, 10, 0.1, 1e-5, generators=gens)


def ppo_policy_loss(agent, x, actions, old_logprobs, adv):
    """The policy part of ppo_continuous.py's minibatch loss per seed, written out independently."""
    _, newlogprob, entropy, _ = agent.get_action_and_value(x, actions)
    ratio = (newlogprob - old_logprobs).exp()
    return torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - CLIP, 1 + CLIP)).mean(1) - ENT * entropy.mean(1)


def kl_to_clean(agent, x, x_hat):
    """KL(pi(.|x) || pi(.|x_hat)) per seed and row, [N, B]."""
    std = agent.actor.log_std.exp().unsqueeze(1)
    dist = torch.distributions.Normal(agent.actor(x), std)
    dist_hat = torch.distributions.Normal(agent.actor(x_hat), std)
    return torch.distributions.kl_divergence(dist, dist_hat).sum(-1)


def surrogate(agent, x_hat, actions, old_logprobs, adv):
    _, newlogprob, _, _ = agent.get_action_and_value(x_hat, actions)
    ratio = (newlogprob - old_logprobs).exp()
    return torch.min(ratio * adv, torch.clamp(ratio, 1 - CLIP, 1 + CLIP) * adv)


# ---------------------------------------------------------------- inner loops


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_hand_backprop_matches_autograd(name, activation):
    mod = module(name)
    agent = make_agent(mod, activation)
    x = torch.randn(1, BATCH, OBS_DIM, requires_grad=True)
    g = torch.randn(1, BATCH, ACT_DIM)
    (expected,) = torch.autograd.grad((agent.actor(x) * g).sum(), x)
    with torch.no_grad():
        mean, backward = mod.make_actor_vjp(agent.actor)(x)
        got = backward(g)
    torch.testing.assert_close(mean, agent.actor(x).detach())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SCRIPTS)
def test_one_inner_step_is_the_autograd_sign_step(name):
    """steps=1, temperature 0: x_hat = proj(x + delta0 +- step * sign(grad of the objective at x + delta0)), the
    gradient taken by torch.autograd on the paper's objective (KL, or the clipped surrogate with its flat parts)."""
    mod = module(name)
    agent = make_agent(mod)
    x, actions, old_logprobs, adv = make_batch(agent)
    if name == "arppo":
        x_hat, _, _ = mod.pgd_surrogate_attack(agent, x, actions, old_logprobs, adv, CLIP, EPS, 1, 0.5, generators=[torch.Generator().manual_seed(6)])
    else:
        x_hat, _, _ = mod.sgld_kl_attack(agent, x, EPS, 1, 0.5, 0.0, generators=[torch.Generator().manual_seed(6)])
    if name == "arppo":  # AR-PPO's PGD starts uniformly in the ball, SA-PPO's SGLD at +-step per coordinate
        delta0 = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(6)) - 1) * EPS
    else:
        delta0 = 0.5 * EPS * torch.randn(x.shape, generator=torch.Generator().manual_seed(6)).sign()
    x0 = (x + delta0).requires_grad_(True)
    if name == "arppo":
        objective = -surrogate(agent, x0, actions, old_logprobs, adv).sum()  # PGD descends the surrogate
        with torch.no_grad():
            ratio = (agent.get_action_and_value(x0, actions)[1] - old_logprobs).exp()
        assert (ratio * adv > torch.clamp(ratio, 1 - CLIP, 1 + CLIP) * adv).sum() >= 5  # the flat (clipped) case occurs
    else:
        objective = kl_to_clean(agent, x, x0).sum()
    (grad,) = torch.autograd.grad(objective, x0)
    expected = x + (delta0 + 0.5 * EPS * grad.sign()).clamp(-EPS, EPS)
    torch.testing.assert_close(x_hat, expected)


@pytest.mark.parametrize("name", SCRIPTS)
def test_inner_loop_stays_in_ball_and_is_a_constant(name):
    mod = module(name)
    agent = make_agent(mod)
    x, actions, old_logprobs, adv = make_batch(agent)
    x.requires_grad_(True)  # even so, x_hat must carry no graph
    before = [p.detach().clone() for p in agent.parameters()]
    x_hat, _, _ = attack(mod, agent, x, actions, old_logprobs, adv, EPS)
    assert x_hat.shape == x.shape and not x_hat.requires_grad and x_hat.grad_fn is None
    dist = (x_hat - x.detach()).abs()
    assert dist.max().item() <= EPS + 1e-6
    assert dist.max().item() > 0.9 * EPS  # it moved (sign steps reach the boundary)
    assert all(p.grad is None for p in agent.parameters())  # no parameter gradient accumulated
    assert all(torch.equal(p, q) for p, q in zip(agent.parameters(), before))
    assert x.grad is None


@pytest.mark.parametrize("name", SGLD_SCRIPTS)
def test_sgld_raises_kl(name):
    mod = module(name)
    agent = make_agent(mod)
    x, *_ = make_batch(agent)
    x_hat, kl_start, kl_end = mod.sgld_kl_attack(agent, x, EPS, 10, 0.1, 1e-5, generators=[torch.Generator().manual_seed(3)])
    with torch.no_grad():
        kl = kl_to_clean(agent, x, x_hat)
        start = mod.sgld_kl_attack(agent, x, EPS, 10, 0.1, 1e-5, generators=[torch.Generator().manual_seed(3)])[1]
    torch.testing.assert_close(kl_end, kl.mean(1), rtol=1e-4, atol=1e-7)  # the reported KL is the KL at x_hat
    torch.testing.assert_close(kl_start, start)
    assert kl_end.item() > 2 * kl_start.item()  # well above the random start
    # and above the best of 10 random points of the ball, per sample on average
    with torch.no_grad():
        g = torch.Generator().manual_seed(4)
        rand = torch.stack([kl_to_clean(agent, x, x + (2 * torch.rand(x.shape, generator=g) - 1) * EPS) for _ in range(10)])
    assert kl.mean().item() > rand.max(0).values.mean().item()


@pytest.mark.parametrize("name", SGLD_SCRIPTS)
def test_sgld_starts_at_plus_minus_step_and_never_ends_below_the_start(name):
    """SA-PPO's start: x + (eps/steps) * sign(N(0, 1)), every coordinate exactly one step off x; the KL reported at the
    start is the KL there, and the end's KL is at least the start's."""
    mod = module(name)
    agent = make_agent(mod)
    x, *_ = make_batch(agent)
    x_hat, kl_start, kl_end = mod.sgld_kl_attack(agent, x, EPS, 10, 0.1, 1e-5, generators=[torch.Generator().manual_seed(8)])
    delta0 = 0.1 * EPS * torch.randn(x.shape, generator=torch.Generator().manual_seed(8)).sign()
    assert torch.all(delta0.abs() == 0.1 * EPS)
    with torch.no_grad():
        torch.testing.assert_close(kl_start, kl_to_clean(agent, x, x + delta0).mean(1), rtol=1e-4, atol=1e-7)
        assert (kl_to_clean(agent, x, x_hat) >= kl_to_clean(agent, x, x + delta0) - 1e-6).float().mean() > 0.95
    assert kl_end >= kl_start


@pytest.mark.parametrize("name", SGLD_SCRIPTS)
def test_sgld_reaches_the_corner_where_the_gradient_sign_is_constant(name):
    """A net whose mean is linear in x inside the ball (relu units all active): mu(x_hat) - mu(x) = v . delta, so the
    ascent direction is s * sign(v) with s = sign(v . delta0) throughout. Coordinates that start on that side reach the
    face (step + 10 steps, clipped at eps); those that start on the other side end at 0.9 eps: exact values."""
    mod = module(name)
    agent = mod.Agent(OBS_DIM, 1, mod.Args(init_std=0.5, activation="relu", hidden_sizes=(8,)), [torch.Generator().manual_seed(0)])
    with torch.no_grad():
        agent.actor.layers[0].bias.fill_(100.0)  # every relu unit active in the ball: the net is linear there
    x = torch.randn(1, 16, OBS_DIM)
    x_hat, _, _ = mod.sgld_kl_attack(agent, x, EPS, 10, 0.1, 0.0, generators=[torch.Generator().manual_seed(9)])
    delta0 = 0.1 * EPS * torch.randn(x.shape, generator=torch.Generator().manual_seed(9)).sign()
    v = (agent.actor.layers[1].weight[0] @ agent.actor.layers[0].weight[0]).detach().reshape(-1)
    direction = torch.sign(delta0 @ v).unsqueeze(-1) * torch.sign(v)
    expected = torch.where(torch.sign(delta0) == direction, EPS * direction, 0.9 * EPS * direction)
    torch.testing.assert_close(x_hat - x, expected, rtol=0, atol=1e-6)
    assert (torch.sign(delta0) != direction).any() and (torch.sign(delta0) == direction).any()  # both cases occur


@pytest.mark.parametrize("name", SCRIPTS)
def test_stacked_inner_loop_equals_each_seed_alone(name):
    """Three seeds' minibatches at once (each its own actor and generator) give what each seed gives alone."""
    mod = module(name)
    agent = make_agent(mod, seeds=3)
    with torch.no_grad():
        for n, p in enumerate(agent.actor.layers[0].weight):
            p.mul_(1 + 0.3 * n)  # three different actors
    x, actions, old_logprobs, adv = make_batch(agent)
    x_hat, start, end = attack(mod, agent, x, actions, old_logprobs, adv, EPS, seed=20)
    for n in range(3):
        alone = make_agent(mod)
        alone.load_seed_state_dict(0, agent.seed_state_dict(n))
        rows = (t[n : n + 1] for t in (x, actions, old_logprobs, adv))
        x_hat_n, start_n, end_n = attack(mod, alone, *rows, EPS, seed=20 + n)
        torch.testing.assert_close(x_hat[n : n + 1], x_hat_n, rtol=0, atol=1e-6)
        torch.testing.assert_close(start[n : n + 1], start_n)
        torch.testing.assert_close(end[n : n + 1], end_n)


@pytest.mark.parametrize("name", SGLD_SCRIPTS)
def test_training_sgld_equals_the_mad_attack_at_temperature_zero(name):
    """The training-time inner loop and attacks/mad.py are the same routine (SA-PPO's): from the same start (the same
    seed draws the same sign(N(0, 1)) for one row) and with no noise they return the same state. In float64: each step
    takes the sign of the gradient, and in float32 the two computations of it (a hand-written VJP over batched matmuls,
    autograd through the frozen policy) round differently, which can flip the sign of a coordinate whose gradient is
    about 0 (on an Intel Xeon: 2 coordinates of 1 row in 8, one step apart): a tie broken otherwise, not another routine."""
    from attacks.mad import MADAttack

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        mod = module(name)
        agent = make_agent(mod)
        x, *_ = make_batch(agent)
        policy = agent.policy(0, mod.Args(init_std=0.5))  # the frozen policy eval uses (float32 as loaded), in float64
        policy.actor.double()
        mad = MADAttack(policy, EPS, steps=10, temperature=0.0)
        for i in range(8):
            row = x[:, i : i + 1]
            x_train, _, _ = mod.sgld_kl_attack(agent, row, EPS, 10, 0.1, 0.0, generators=[torch.Generator().manual_seed(100 + i)])
            x_mad = mad(row[0], [torch.Generator().manual_seed(100 + i)])
            assert x_train.dtype == x_mad.dtype == torch.float64
            torch.testing.assert_close(x_train[0], x_mad, rtol=0, atol=1e-12)
    finally:
        torch.set_default_dtype(default)


@pytest.mark.slow
def test_barppo_guided_loss_has_the_entropy_only_in_the_robust_term(tmp_path):
    """Algorithm 3, line 10: PPO's clipped surrogate at the clean states (no entropy) + kappa * L_bar, and L_bar carries
    the entropy bonus. So at kappa 0 the entropy coefficient changes nothing: the runs end bit-identical."""
    paths = []
    for ent in (0.0, 0.5):
        d = tmp_path / str(ent)
        d.mkdir()
        proc = run("barppo.py", *SMOKE_ARGS[:-2], "--eval-episodes", 0, "--kappa", 0, "--ent-coef", ent, cwd=d, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        (path,) = glob.glob(str(d / "runs" / "*" / "barppo.safetensors"))
        paths.append(load_checkpoint(path)[0])
    for a, b in zip(paths[0].state_dict().values(), paths[1].state_dict().values()):
        assert torch.equal(a, b)


def test_pgd_lowers_surrogate():
    mod = module("arppo")
    agent = make_agent(mod)
    x, actions, old_logprobs, adv = make_batch(agent)
    x_hat, s_start, s_end = attack(mod, agent, x, actions, old_logprobs, adv, EPS)
    with torch.no_grad():
        s = surrogate(agent, x_hat, actions, old_logprobs, adv)
        clean = surrogate(agent, x, actions, old_logprobs, adv).mean(1)
    torch.testing.assert_close(s_end, s.mean(1), rtol=1e-4, atol=1e-6)  # the reported value is the surrogate at x_hat
    assert s_end.item() < s_start.item() - 0.05
    assert s_end.item() < clean.item() - 0.05


# ---------------------------------------------------------------- robust losses


@pytest.mark.parametrize("name", SCRIPTS)
def test_eps_zero_gives_the_ppo_loss(name):
    mod = module(name)
    agent = make_agent(mod)
    x, actions, old_logprobs, adv = make_batch(agent)
    ppo = ppo_policy_loss(agent, x, actions, old_logprobs, adv)
    x_hat, _, _ = attack(mod, agent, x, actions, old_logprobs, adv, 0.0)
    assert torch.equal(x_hat, x)
    x_far, _, _ = attack(mod, agent, x, actions, old_logprobs, adv, EPS)
    if name == "sappo":
        reg = mod.kl_regularizer(agent, x, x_hat)
        assert abs(reg.item()) < 1e-6
        assert mod.kl_regularizer(agent, x, x_far).item() > 1e-3  # and not at eps > 0
    else:
        robust = mod.robust_policy_loss(agent, x_hat, actions, old_logprobs, adv, CLIP, ENT)
        torch.testing.assert_close(robust, ppo)
        far = mod.robust_policy_loss(agent, x_far, actions, old_logprobs, adv, CLIP, ENT)
        assert abs(far.item() - ppo.item()) > 1e-3  # and not at eps > 0
        if name == "arppo":  # whose adversary minimizes exactly this surrogate
            assert far.item() > ppo.item() + 0.01


def test_sappo_regularizer_is_twice_the_gaussian_kl_with_clean_side_detached():
    """SA-PPO's code regularizes sum(((mu_hat - mu) / std)^2): twice the KL, in value and in gradient (std not detached)."""
    mod = module("sappo")
    agent = make_agent(mod)
    x, *_ = make_batch(agent)
    x_hat, _, _ = mod.sgld_kl_attack(agent, x, EPS, generators=[torch.Generator().manual_seed(5)])
    reg = mod.kl_regularizer(agent, x, x_hat)
    with torch.no_grad():
        torch.testing.assert_close(reg, 2 * kl_to_clean(agent, x, x_hat).mean(1), rtol=1e-5, atol=1e-7)
    # detached clean side: the gradient equals that of 2 KL(stop_grad(pi(.|x)) || pi(.|x_hat)) only
    reg.backward()
    grads = [p.grad.clone() for p in agent.actor.parameters()]
    agent.zero_grad(set_to_none=True)
    with torch.no_grad():
        mean0 = agent.actor(x)
    dist0 = torch.distributions.Normal(mean0, agent.actor.log_std.detach().exp().unsqueeze(1))
    dist = torch.distributions.Normal(agent.actor(x_hat), agent.actor.log_std.exp().unsqueeze(1))
    (2 * torch.distributions.kl_divergence(dist0, dist).sum(-1).mean()).backward()
    for got, p in zip(grads, agent.actor.parameters()):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", SCRIPTS)
def test_gradient_reaches_actor_not_inner_solution(name):
    mod = module(name)
    agent = make_agent(mod)
    x, actions, old_logprobs, adv = make_batch(agent)
    x.requires_grad_(True)
    x_hat, _, _ = attack(mod, agent, x, actions, old_logprobs, adv, EPS)
    if name == "sappo":
        loss = mod.kl_regularizer(agent, x, x_hat)
    else:
        loss = mod.robust_policy_loss(agent, x_hat, actions, old_logprobs, adv, CLIP, ENT)
    loss.backward()  # the robust term alone
    assert x.grad is None and x_hat.grad is None  # x_hat is a constant: no path back to the states
    for p in (agent.actor.layers[0].weight, agent.actor.layers[-1].weight, agent.actor.log_std):
        assert p.grad is not None and p.grad.abs().sum().item() > 0
    assert all(p.grad is None for p in agent.critic.parameters())


def test_eps_schedule_and_defaults():
    for name in SCRIPTS:
        mod = module(name)
        args = mod.resolve_args(mod.Args(env_id="Ant-v4"))
        assert args.epsilon == 0.15 and args.kappa == {"sappo": 0.1, "arppo": 1.0, "barppo": 1.0}[name]
        args = mod.resolve_args(mod.Args(env_id="Hopper-v5", kappa=0.7, epsilon=0.01))
        assert (args.epsilon, args.kappa) == (0.01, 0.7)
    assert module("sappo").resolve_args(module("sappo").Args(env_id="Hopper-v4")).kappa == 1.0
    assert module("barppo").resolve_args(module("barppo").Args(env_id="HalfCheetah-v4")).kappa == 0.3


# ---------------------------------------------------------------- smoke runs and bad input

SMOKE = [("sappo", ()), ("arppo", ()), ("arppo", ("--no-guidance",)), ("barppo", ()), ("barppo", ("--no-guidance",))]
SMOKE_ARGS = ("--env-id", "Hopper-v4", "--total-timesteps", 256, "--num-steps", 128, "--num-minibatches", 4,
              "--update-epochs", 2, "--eval-episodes", 1)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """All smoke runs at once (each is mostly interpreter start-up): {(name, flags): (cwd, CompletedProcess)}."""
    cwds = {case: tmp_path_factory.mktemp(case[0]) for case in SMOKE}
    with concurrent.futures.ThreadPoolExecutor(len(SMOKE)) as pool:
        futures = {case: pool.submit(run, f"{case[0]}.py", *SMOKE_ARGS, *case[1], cwd=cwds[case], timeout=300) for case in SMOKE}
        return {case: (cwds[case], f.result()) for case, f in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", SMOKE, ids=[" ".join((n, *f)) for n, f in SMOKE])
def test_smoke_two_iterations_write_loadable_checkpoint(smoke_runs, case):
    name, flags = case
    cwd, proc = smoke_runs[case]
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = glob.glob(os.path.join(cwd, "runs", f"Hopper-v4__{name}__1__*", f"{name}.safetensors"))
    policy, meta = load_checkpoint(path, env_id="Hopper-v4")
    assert meta["script"] == f"{name}.py" and meta["env_id"] == "Hopper-v4"
    assert meta["epsilon"] == 0.075 and meta["global_step"] == 256
    if name != "sappo":
        assert meta["args"]["guidance"] == ("--no-guidance" not in flags)
    obs = torch.randn(5, meta["obs_dim"]).double().numpy() * 3
    actions = policy.actor(torch.from_numpy(policy.normalize(obs)))
    assert torch.isfinite(actions).all()
    # the closing evaluation: natural and the three attacks that need no training, at the target eps
    for what in ("natural", "random", "critic", "mad"):
        assert re.search(rf"eval: {what} return -?\d+\.\d", proc.stdout), proc.stdout[-2000:]
    # the eps schedule (2 iterations, ramp over 75% of them: 1.5 iterations) and the robust metrics were logged
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = glob.glob(os.path.join(os.path.dirname(path), "events.out.tfevents.*"))
    acc = EventAccumulator(events)
    acc.Reload()
    eps = [e.value for e in acc.Scalars("robust/eps")]
    assert eps == pytest.approx([0.075 / 1.5, 0.075])
    inner = ["robust/surrogate_start", "robust/surrogate_end"] if name == "arppo" else ["robust/kl_start", "robust/kl_end"]
    for tag in ["robust/kappa", "robust/loss", *inner]:
        assert all(math.isfinite(e.value) for e in acc.Scalars(tag))


# tiny budgets: if a check regresses, the run trains for a second and the test fails at once, not at a timeout
TINY = ("--env-id", "Hopper-v4", "--total-timesteps", 128, "--num-steps", 64, "--num-minibatches", 2, "--update-epochs", 1, "--eval-episodes", 0)


@pytest.mark.parametrize("name", SCRIPTS)
def test_unknown_env_without_epsilon_exits_2(tmp_path, name):
    proc = run(f"{name}.py", *TINY, "--env-id", "InvertedPendulum-v4", cwd=tmp_path, timeout=60)
    assert proc.stderr.strip().count("\n") == 0, proc.stderr  # exactly one line
    assert "--epsilon" in one_line_error(proc)
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize("name,flags", [("sappo", ("--epsilon", "-0.1")), ("arppo", ("--kappa", "-1")), ("barppo", ("--inner-steps", "0")),
                                        ("barppo", ("--num-seeds", "0")), ("sappo", ("--num-seeds", "2", "--target-kl", "0.02"))])
def test_bad_robust_flags_exit_2(tmp_path, name, flags):
    one_line_error(run(f"{name}.py", *TINY, *flags, cwd=tmp_path, timeout=60))
