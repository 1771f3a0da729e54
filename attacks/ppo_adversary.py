"""What the learned attacks (rs.py, sa_rl.py, pa_ad.py) share: a small PPO learner for an adversary that acts on
the victim's normalized observation, numpy copies of small MLPs for fast rollouts, and saving/caching what an
attack learned next to the victim checkpoint (the evaluation protocol: docs/protocol.md).

PPO as in ppo_continuous.py (Schulman et al. 2017; clipped surrogate, GAE, reward scaling by the running std of
the discounted return), maximizing the adversary's return sum_t gamma^t r_adv_t, r_adv = -r_victim:
    L = E[min(rho A, clip(rho, 1-0.2, 1+0.2) A)] - 0.5 * vf_coef * (V(x) - R)^2
Here the victim is part of the environment: the adversary sees x = norm(s), picks a, `victim_action(x, a)` turns a
into the victim's action on the perturbed observation (deterministic for sa_rl and pa_ad; sampled from the victim's
Gaussian for the reference attacks sa_rl_ref and pa_ad_ref, `numpy_sampled_victim`), and the real env steps with it.
"""
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn


@dataclass
class PPOConfig:
    """The adversary's PPO settings: the robust-RL papers' PPO (docs/protocol.md) unless noted."""

    num_envs: int = 1
    """envs stepped in a list; a rollout is num_envs x num_steps"""
    num_steps: int = 2048
    """steps per env per rollout (num_envs * num_steps = 2048 per iteration by default)"""
    update_epochs: int = 10
    """epochs over each rollout"""
    num_minibatches: int = 32
    """minibatches per epoch"""
    gamma: float = 0.99
    """discount of the adversary's return"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    clip_coef: float = 0.2
    """PPO ratio clip (and value clip)"""
    learning_rate: float = 3e-4
    """Adam, actor and critic alike, linearly annealed to 0"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0"""
    ent_coef: float = 0.0
    """entropy bonus"""
    vf_coef: float = 0.5
    """value-loss weight"""
    clip_vloss: bool = True
    """clipped value loss"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip (CleanRL's default; 0: off)"""
    norm_adv: bool = True
    """normalize advantages per minibatch"""
    init_std: float = 1.0
    """initial std of the adversary's Gaussian (before any squashing)"""
    hidden_sizes: tuple = (64, 64)
    """hidden sizes of the adversary's actor and critic (tanh)"""
    reward_scale: bool = True
    """divide the adversary's reward by the running std of its discounted return (clip +-10), as ppo_continuous.py"""
    reward_clip: float = 10.0
    """clip of the scaled reward"""


def masked_normalize(x, mask):
    """x [..., B] shifted and scaled to mean 0, std 1 over the entries where mask is 1: an adversary that acts on some
    steps only (action_mix) normalizes its advantages over those. Its critic baselines the mixture's play, so on its
    own steps the advantages lean positive; normalized over all steps they would push up every sampled action."""
    n = mask.sum(-1, keepdim=True)
    mean = (x * mask).sum(-1, keepdim=True) / n.clamp(min=1.0)
    var = (((x - mean) * mask) ** 2).sum(-1, keepdim=True) / (n - 1).clamp(min=1.0)
    return (x - mean) / (var.sqrt() + 1e-8)


def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class MLP(nn.Module):
    """tanh MLP with Linear layers in `layers` (same names as the agents'); the last layer has no activation."""

    def __init__(self, sizes, out_std):
        super().__init__()
        n = len(sizes) - 1
        self.layers = nn.ModuleList([layer_init(nn.Linear(sizes[i], sizes[i + 1]), out_std if i == n - 1 else np.sqrt(2)) for i in range(n)])
        self.act = torch.tanh

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)


class GaussianAgent(nn.Module):
    """Adversary: Gaussian policy (MLP mean, state-independent log-std) and a separate critic, both on x."""

    def __init__(self, obs_dim, act_dim, hidden_sizes=(64, 64), init_std=1.0):
        super().__init__()
        self.actor = MLP((obs_dim, *hidden_sizes, act_dim), out_std=0.01)
        self.actor.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        self.critic = MLP((obs_dim, *hidden_sizes, 1), out_std=1.0)

    def get_action_and_value(self, x, action):
        mean = self.actor(x)
        log_std = self.actor.log_std
        logprob = -0.5 * (((action - mean) * torch.exp(-log_std)) ** 2).sum(1) - (log_std.sum() + 0.5 * math.log(2 * math.pi) * mean.shape[1])
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum().expand(mean.shape[0])
        return logprob, entropy, self.critic(x).view(-1)


def forward_invariant(mlp, x):
    """mlp(x) with row i's output independent of the batch it is in (broadcast multiply-and-sum instead of BLAS,
    whose kernels change with the batch size), as the victim's forward in attacks/checkpoint.py: attacks computed
    for N episodes at once give exactly the perturbations of one episode at a time."""
    for layer in mlp.layers[:-1]:
        x = mlp.act((x.unsqueeze(-2) * layer.weight).sum(-1) + layer.bias)
    return (x.unsqueeze(-2) * mlp.layers[-1].weight).sum(-1) + mlp.layers[-1].bias


def numpy_weights(mlp):
    """[(W^T, b)] float32 copies of an MLP's Linear layers and its activation name ("tanh" or "relu")."""
    weights = [(layer.weight.detach().float().numpy().T.copy(), layer.bias.detach().float().numpy().copy()) for layer in mlp.layers]
    if mlp.act is torch.tanh:
        return weights, "tanh"
    if mlp.act is torch.relu:
        return weights, "relu"
    raise ValueError(f"unsupported activation {mlp.act!r} (tanh or relu)")


def numpy_mlp(mlp):
    """A numpy copy of a small MLP's forward pass: per env step ~10x cheaper than torch at batch size 1-8."""
    weights, act = numpy_weights(mlp)
    f = np.tanh if act == "tanh" else (lambda h: np.maximum(h, 0.0))

    def forward(x):
        for w, b in weights[:-1]:
            x = f(x @ w + b)
        return x @ weights[-1][0] + weights[-1][1]

    return forward


VICTIM_NOISE_STREAM = 1  # numpy seed [seed, 1]: apart from the trainer's default_rng(seed), the adversary's noise


def victim_noise_rng(seed):
    """The generator of the sampled victim's action noise in a fit with `seed` (its own stream, so adding victim noise
    leaves the adversary's exploration noise as it was)."""
    return np.random.default_rng([seed, VICTIM_NOISE_STREAM])


def numpy_sampled_victim(policy, seed):
    """The victim acting stochastically, as it does while the official SA-RL and PA-AD adversaries train (their
    rollouts sample the victim's Gaussian): x -> mu(x) + exp(log_std) * z, z ~ N(0, 1) from victim_noise_rng(seed)."""
    mean = numpy_mlp(policy.actor)
    std = np.exp(policy.actor.log_std.detach().float().numpy())
    rng = victim_noise_rng(seed)

    def act(x):
        mu = mean(x)
        return mu + std * rng.standard_normal(mu.shape).astype(np.float32)

    return act


def numpy_normalizer(obs_norm):
    """obs_norm.normalize_np with its constants computed once (the same arithmetic, so bit-identical results)."""
    mean, std = obs_norm.mean.numpy().copy(), np.sqrt(obs_norm.var.numpy() + obs_norm.eps)
    clip = obs_norm.clip

    def normalize(x):
        return np.clip((x - mean) / std, -clip, clip).astype(np.float32)

    return normalize


def format_duration(seconds):
    """42 s, 6 min, 1.5 h: for ETAs and time estimates, where more digits would claim a precision they lack."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class FitProgress:
    """Progress of one phase of a learned attack's fit, on stderr. mode "bar" (or True): a tqdm bar, for a terminal.
    "lines": a plain line every ~10% of `total` (what, done/total, rate, ETA), for logs and pipes, where a bar is one
    endless line of carriage returns and a 25-minute fit would otherwise look hung. False or None: nothing."""

    def __init__(self, mode, total, desc, unit="steps"):
        self.mode = "bar" if mode is True else (mode or None)
        if self.mode not in (None, "bar", "lines"):
            raise ValueError(f"progress must be 'bar', 'lines', True, False or None, got {mode!r}")
        self.total, self.desc, self.unit = max(int(total), 1), desc, unit
        self.done, self.start, self.next_line = 0, time.time(), self.total / 10
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit=unit, unit_scale=True, desc=desc, dynamic_ncols=True)

    def update(self, n, **postfix):
        """n more units done; postfix: a few key=value readings (losses, the victim's return) shown with it."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(**postfix, refresh=False)
        elif self.mode == "lines" and self.done >= min(self.next_line, self.total):
            while self.next_line <= self.done:
                self.next_line += self.total / 10
            rate = self.done / max(time.time() - self.start, 1e-9)
            eta = format_duration((self.total - self.done) / rate)
            extra = "".join(f", {k.replace('_', ' ')} {v}" for k, v in postfix.items())
            print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%), "
                  f"{rate:.0f} {self.unit}/s, ETA {eta}{extra}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def compute_gae(rewards, values, ends, next_value, gamma, gae_lambda):
    """GAE over [T, N]; ends[t]: the episode ended at step t (a truncated step's reward already holds gamma * V(final))."""
    advantages = np.zeros_like(rewards)
    last = 0.0
    for t in reversed(range(rewards.shape[0])):
        next_values = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        nonterminal = 1.0 - ends[t]
        delta = rewards[t] + gamma * next_values * nonterminal - values[t]
        advantages[t] = last = delta + gamma * gae_lambda * nonterminal * last
    return advantages


def train_ppo(agent, env_id, total_steps, seed, normalize, victim_action, cfg, progress=False, desc="adversary"):
    """Train `agent` by PPO against the frozen victim in the real env; returns {"episode_returns": victim's raw
    returns seen during training, "sps": env steps per second}.

    normalize(obs) -> x (the victim's frozen normalizer); victim_action(x, a) -> the victim's action [N, act_dim]
    when the adversary plays a [N, k] at x (numpy, batched over the N envs; clipped to the bounds here), or
    (action, acted [N] bool) when the adversary's action reached the env only on some steps: its policy loss then
    counts those steps alone (its critic all of them).
    progress: "bar" (or True), "lines" or False/None (see FitProgress).
    """
    envs = [gym.make(env_id) for _ in range(cfg.num_envs)]
    N, T = cfg.num_envs, cfg.num_steps
    obs_dim = envs[0].observation_space.shape[0]
    k = agent.actor.layers[-1].out_features
    low, high = envs[0].action_space.low, envs[0].action_space.high
    batch_size = N * T
    if batch_size % cfg.num_minibatches:
        raise ValueError(f"num_minibatches {cfg.num_minibatches} does not divide the batch size {batch_size}")
    minibatch_size = batch_size // cfg.num_minibatches
    num_iterations = max(1, total_steps // batch_size)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5, fused=True)  # fused: 1/3 the cost here

    obs = np.zeros((T, N, obs_dim), dtype=np.float32)
    actions = np.zeros((T, N, k), dtype=np.float32)
    rewards = np.zeros((T, N), dtype=np.float32)
    ends = np.zeros((T, N), dtype=np.float32)
    acted, masked = np.ones((T, N), dtype=np.float32), False
    next_raw = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    ret_acc, ret_mean, ret_var, ret_count = np.zeros(N), 0.0, 1.0, 1e-4
    ep_return, episode_returns = np.zeros(N), []
    start_time, global_step = time.time(), 0
    pbar = FitProgress(progress, num_iterations * batch_size, desc)
    for iteration in range(1, num_iterations + 1):
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * cfg.learning_rate

        # rollout: adversary, victim and env in numpy
        mean = numpy_mlp(agent.actor)
        std = np.exp(agent.actor.log_std.detach().numpy())
        noise = rng.standard_normal((T, N, k)).astype(np.float32)
        final_obs, final_idx = [], []
        for step in range(T):
            global_step += N
            x = normalize(next_raw)
            obs[step] = x
            a = mean(x) + std * noise[step]
            actions[step] = a
            act = victim_action(x, a)
            if isinstance(act, tuple):
                (act, acted[step]), masked = act, True
            act = np.clip(act, low, high)
            for i, env in enumerate(envs):
                o, r, terminated, truncated, _ = env.step(act[i])
                ep_return[i] += r
                ret_acc[i] = ret_acc[i] * cfg.gamma - r
                rewards[step, i] = -r
                ends[step, i] = terminated or truncated
                if terminated or truncated:
                    if truncated and not terminated:
                        final_obs.append(normalize(o[None])[0])
                        final_idx.append((step, i))
                    episode_returns.append(float(ep_return[i]))
                    ep_return[i] = 0.0
                    o, _ = env.reset()
                next_raw[i] = o
            if cfg.reward_scale:
                b_mean = float(ret_acc.sum()) / N
                b_var = float(np.square(ret_acc - b_mean).sum()) / N
                delta, tot = b_mean - ret_mean, ret_count + N
                ret_var = (ret_var * ret_count + b_var * N + delta**2 * ret_count * N / tot) / tot
                ret_mean, ret_count = ret_mean + delta * N / tot, tot
                rewards[step] = np.clip(rewards[step] / np.sqrt(ret_var + 1e-8), -cfg.reward_clip, cfg.reward_clip)
            ret_acc[ends[step] > 0] = 0.0

        with torch.no_grad():
            b_obs = torch.from_numpy(obs.reshape(-1, obs_dim))
            b_actions = torch.from_numpy(actions.reshape(-1, k))
            b_logprobs, _, b_values = agent.get_action_and_value(b_obs, b_actions)
            values = b_values.numpy().reshape(T, N)
            next_value = agent.critic(torch.from_numpy(normalize(next_raw))).numpy().reshape(-1)
            if final_obs:
                final_values = agent.critic(torch.from_numpy(np.stack(final_obs))).numpy().reshape(-1)
                for (s, i), v in zip(final_idx, final_values):
                    rewards[s, i] += cfg.gamma * v
        advantages = compute_gae(rewards, values, ends, next_value, cfg.gamma, cfg.gae_lambda)
        b_advantages = torch.from_numpy(advantages.reshape(-1))
        b_returns = b_advantages + b_values
        b_acted = torch.from_numpy(acted.reshape(-1))

        for epoch in range(cfg.update_epochs):
            perm = torch.randperm(batch_size, generator=gen)
            e_obs, e_actions, e_logprobs, e_adv, e_returns, e_values, e_acted = (
                t[perm] for t in (b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values, b_acted))
            for start in range(0, batch_size, minibatch_size):
                mb = slice(start, start + minibatch_size)
                newlogprob, entropy, newvalue = agent.get_action_and_value(e_obs[mb], e_actions[mb])
                ratio = (newlogprob - e_logprobs[mb]).exp()
                mb_adv = e_adv[mb]
                if cfg.norm_adv:
                    mb_adv = masked_normalize(mb_adv, e_acted[mb]) if masked else (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg = torch.max(-mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef))
                pg_loss = (pg * e_acted[mb]).sum() / e_acted[mb].sum().clamp(min=1.0) if masked else pg.mean()
                if cfg.clip_vloss:
                    v_clipped = e_values[mb] + torch.clamp(newvalue - e_values[mb], -cfg.clip_coef, cfg.clip_coef)
                    v_loss = 0.5 * torch.max((newvalue - e_returns[mb]) ** 2, (v_clipped - e_returns[mb]) ** 2).mean()
                else:
                    v_loss = 0.5 * ((newvalue - e_returns[mb]) ** 2).mean()
                loss = pg_loss - cfg.ent_coef * entropy.mean() + cfg.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                if cfg.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                optimizer.step()

        recent = float(np.mean(episode_returns[-10:])) if episode_returns else float("nan")
        pbar.update(batch_size, victim_return=f"{recent:.0f}")
    pbar.close()
    for env in envs:
        env.close()
    return {"episode_returns": episode_returns, "sps": global_step / (time.time() - start_time)}


@dataclass
class FitJob:
    """One learned attack's fit as train_ppo takes it: the adversary to train, the victim's frozen normalizer and its
    response to the adversary's action (train_ppo's normalize and victim_action), the fit's seed and label, and the env
    it trains in when that is its own (an EnvSpec: the sumo arena with this fit's victim in it)."""

    agent: GaussianAgent
    normalize: object
    victim_action: object
    seed: int
    desc: str = "adversary"
    env: object = None


def stacked_forward(layers, x):
    """A stacked tanh MLP: layers [(W [M, out, in], b [M, out])], x [M, B, in] -> [M, B, out]; row m through net m.
    A one-output layer (the critic's head) is a multiply-and-sum: a batched product with one output column takes
    another kernel when M is 1, so a fit would round differently alone than beside others."""
    for w, b in layers[:-1]:
        x = torch.tanh(torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)))
    w, b = layers[-1]
    if w.shape[1] == 1:
        return (x * w).sum(2, keepdim=True) + b.unsqueeze(1)
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def train_ppo_many(jobs, env_id, total_steps, cfg, progress=False):
    """train_ppo for several fits side by side, one per victim (each its own agent, seed, normalizer, victim, envs and
    random streams; one env, budget and PPO config for all): the adversaries are stacked along a leading dim, so a
    rollout step runs one forward of all of them and a minibatch one forward and one backward (the victims and their
    envs still step one by one). Fit m ends where train_ppo(job m) ends, to float32 rounding after its first updates
    (batched matrix products round a last bit differently), and bit for bit the same whichever fits run beside it, or
    none. Why: the learned attacks of a grid's seeds (benchmark/fit_speed.py). Returns [train_ppo's result per job];
    each job's agent is trained in place."""
    M, N, T = len(jobs), cfg.num_envs, cfg.num_steps
    envs = [[gym.make(env_id if job.env is None else job.env) for _ in range(N)] for job in jobs]
    obs_dim = envs[0][0].observation_space.shape[0]
    k = jobs[0].agent.actor.layers[-1].out_features
    low, high = envs[0][0].action_space.low, envs[0][0].action_space.high
    batch_size = N * T
    if batch_size % cfg.num_minibatches:
        raise ValueError(f"num_minibatches {cfg.num_minibatches} does not divide the batch size {batch_size}")
    minibatch_size = batch_size // cfg.num_minibatches
    num_iterations = max(1, total_steps // batch_size)
    rngs = [np.random.default_rng(job.seed) for job in jobs]
    gens = [torch.Generator().manual_seed(job.seed) for job in jobs]
    # each fit's own parameters, trained in place (Adam and the gradient clip per fit, as alone), stacked at every use
    agents = [job.agent for job in jobs]
    optimizer = torch.optim.Adam([p for a in agents for p in a.parameters()], lr=cfg.learning_rate, eps=1e-5, fused=True)

    def stacked(net):  # [(W [M, out, in], b [M, out])] of the agents' actors or critics
        return [(torch.stack([getattr(a, net).layers[i].weight for a in agents]), torch.stack([getattr(a, net).layers[i].bias for a in agents]))
                for i in range(len(getattr(agents[0], net).layers))]

    def evaluate(x, action):  # GaussianAgent.get_action_and_value per fit: [M, B] logprob, entropy, value
        mean, log_std = stacked_forward(stacked("actor"), x), torch.stack([a.actor.log_std for a in agents])
        logprob = -0.5 * (((action - mean) * torch.exp(-log_std).unsqueeze(1)) ** 2).sum(2) - (log_std.sum(1) + 0.5 * math.log(2 * math.pi) * k).unsqueeze(1)
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(1).unsqueeze(1).expand(M, x.shape[1])
        return logprob, entropy, stacked_forward(stacked("critic"), x).squeeze(2)

    obs = np.zeros((T, M, N, obs_dim), dtype=np.float32)
    actions = np.zeros((T, M, N, k), dtype=np.float32)
    rewards = np.zeros((T, M, N), dtype=np.float32)
    ends = np.zeros((T, M, N), dtype=np.float32)
    acted, masked = np.ones((T, M, N), dtype=np.float32), [False] * M
    next_raw = np.stack([np.stack([env.reset(seed=job.seed + i)[0] for i, env in enumerate(envs_m)]) for job, envs_m in zip(jobs, envs)])
    ret_acc, ret_mean, ret_var, ret_count = np.zeros((M, N)), np.zeros(M), np.ones(M), np.full(M, 1e-4)
    ep_return, episode_returns = np.zeros((M, N)), [[] for _ in jobs]
    start_time, global_step = time.time(), 0
    pbar = FitProgress(progress, num_iterations * batch_size * M, jobs[0].desc if M == 1 else f"{jobs[0].desc} x {M}")
    rows = torch.arange(M).unsqueeze(1)
    for iteration in range(1, num_iterations + 1):
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * cfg.learning_rate

        # rollout: the adversaries in one numpy forward, each victim and its envs on their own
        weights = [(w.detach().numpy().transpose(0, 2, 1).copy(), b.detach().numpy()[:, None, :].copy()) for w, b in stacked("actor")]
        std = np.exp(np.stack([a.actor.log_std.detach().numpy() for a in agents]))[:, None, :]
        noise = np.stack([rng.standard_normal((T, N, k)).astype(np.float32) for rng in rngs], 1)
        final_obs, final_idx = [[] for _ in jobs], [[] for _ in jobs]
        for step in range(T):
            global_step += N
            x = np.stack([job.normalize(raw) for job, raw in zip(jobs, next_raw)])
            obs[step] = x
            h = x
            for w, b in weights[:-1]:
                h = np.tanh(np.matmul(h, w) + b)
            a = np.matmul(h, weights[-1][0]) + weights[-1][1] + std * noise[step]
            actions[step] = a
            for m, job in enumerate(jobs):
                act = job.victim_action(x[m], a[m])
                if isinstance(act, tuple):
                    (act, acted[step, m]), masked[m] = act, True
                act = np.clip(act, low, high)
                for i, env in enumerate(envs[m]):
                    o, r, terminated, truncated, _ = env.step(act[i])
                    ep_return[m, i] += r
                    ret_acc[m, i] = ret_acc[m, i] * cfg.gamma - r
                    rewards[step, m, i] = -r
                    ends[step, m, i] = terminated or truncated
                    if terminated or truncated:
                        if truncated and not terminated:
                            final_obs[m].append(job.normalize(o[None])[0])
                            final_idx[m].append((step, i))
                        episode_returns[m].append(float(ep_return[m, i]))
                        ep_return[m, i] = 0.0
                        o, _ = env.reset()
                    next_raw[m, i] = o
            if cfg.reward_scale:
                b_mean = ret_acc.sum(1) / N
                b_var = np.square(ret_acc - b_mean[:, None]).sum(1) / N
                delta, tot = b_mean - ret_mean, ret_count + N
                ret_var = (ret_var * ret_count + b_var * N + delta**2 * ret_count * N / tot) / tot
                ret_mean, ret_count = ret_mean + delta * N / tot, tot
                rewards[step] = np.clip(rewards[step] / np.sqrt(ret_var[:, None] + 1e-8), -cfg.reward_clip, cfg.reward_clip)
            ret_acc[ends[step] > 0] = 0.0

        with torch.no_grad():
            b_obs = torch.from_numpy(obs.transpose(1, 0, 2, 3).reshape(M, -1, obs_dim))
            b_actions = torch.from_numpy(actions.transpose(1, 0, 2, 3).reshape(M, -1, k))
            b_logprobs, _, b_values = evaluate(b_obs, b_actions)
            values = b_values.numpy().reshape(M, T, N).transpose(1, 0, 2)
            last = torch.from_numpy(np.stack([job.normalize(raw) for job, raw in zip(jobs, next_raw)]))
            critic = stacked("critic")
            next_value = stacked_forward(critic, last).numpy().reshape(M, N)
            for m in range(M):
                if final_obs[m]:
                    one = [(w[m : m + 1], b[m : m + 1]) for w, b in critic]
                    final_values = stacked_forward(one, torch.from_numpy(np.stack(final_obs[m]))[None]).numpy().reshape(-1)
                    for (s, i), v in zip(final_idx[m], final_values):
                        rewards[s, m, i] += cfg.gamma * v
        advantages = compute_gae(rewards, values, ends, next_value, cfg.gamma, cfg.gae_lambda)
        b_advantages = torch.from_numpy(advantages.transpose(1, 0, 2).reshape(M, -1))
        b_returns = b_advantages + b_values
        b_acted = torch.from_numpy(acted.transpose(1, 0, 2).reshape(M, -1))
        use_mask = torch.tensor(masked).unsqueeze(1)

        for epoch in range(cfg.update_epochs):
            perm = torch.stack([torch.randperm(batch_size, generator=g) for g in gens])
            e_obs, e_actions, e_logprobs, e_adv, e_returns, e_values, e_acted = (
                t[rows, perm] for t in (b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values, b_acted))
            for start in range(0, batch_size, minibatch_size):
                mb = slice(start, start + minibatch_size)
                newlogprob, entropy, newvalue = evaluate(e_obs[:, mb], e_actions[:, mb])
                ratio = (newlogprob - e_logprobs[:, mb]).exp()
                mb_adv = e_adv[:, mb]
                if cfg.norm_adv:
                    plain = (mb_adv - mb_adv.mean(1, keepdim=True)) / (mb_adv.std(1, keepdim=True) + 1e-8)
                    mb_adv = torch.where(use_mask, masked_normalize(mb_adv, e_acted[:, mb]), plain)
                pg = torch.max(-mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef))
                weight = torch.where(use_mask, e_acted[:, mb], torch.ones_like(pg))
                pg_loss = (pg * weight).sum(1) / weight.sum(1).clamp(min=1.0)
                if cfg.clip_vloss:
                    v_clipped = e_values[:, mb] + torch.clamp(newvalue - e_values[:, mb], -cfg.clip_coef, cfg.clip_coef)
                    v_loss = 0.5 * torch.max((newvalue - e_returns[:, mb]) ** 2, (v_clipped - e_returns[:, mb]) ** 2).mean(1)
                else:
                    v_loss = 0.5 * ((newvalue - e_returns[:, mb]) ** 2).mean(1)
                loss = pg_loss - cfg.ent_coef * entropy.mean(1) + cfg.vf_coef * v_loss
                optimizer.zero_grad()
                loss.sum().backward()  # the fits' parameters are disjoint slices: each gets its own loss's gradient
                if cfg.max_grad_norm > 0:
                    for a in agents:
                        nn.utils.clip_grad_norm_(a.parameters(), cfg.max_grad_norm)
                optimizer.step()

        recent = float(np.mean([np.mean(r[-10:]) for r in episode_returns if r])) if any(episode_returns) else float("nan")
        pbar.update(batch_size * M, victim_return=f"{recent:.0f}")
    pbar.close()
    for envs_m in envs:
        for env in envs_m:
            env.close()
    seconds = time.time() - start_time
    return [{"episode_returns": returns, "sps": global_step * M / seconds} for returns in episode_returns]


# ---- saving and caching what a learned attack learned (safetensors: tensors + a JSON metadata document) ----


def save_attack(path, name, tensors, meta):
    """Write one .safetensors file atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    tmp = f"{path}.tmp{os.getpid()}"
    save_file(tensors, tmp, metadata={"robust_rl_attack": json.dumps(dict(meta, attack=name))})
    os.replace(tmp, path)


def load_attack(path, name, victim_hash, epsilon):
    """(tensors, meta) of a saved attack; ValueError naming the file if it is not a `name` attack for this victim and eps."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            raw = (f.metadata() or {}).get("robust_rl_attack")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise ValueError(f"{path}: not a readable safetensors file: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    try:
        meta = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        raise ValueError(f"{path}: its metadata is not valid JSON") from None
    if meta.get("attack") != name:
        raise ValueError(f"{path}: holds a {meta.get('attack')!r} attack, not {name!r}")
    if meta.get("victim_hash") != victim_hash:
        raise ValueError(f"{path}: was learned against another victim (hash {str(meta.get('victim_hash'))[:12]}, this one {victim_hash[:12]})")
    if not math.isclose(meta.get("epsilon", float("nan")), epsilon, rel_tol=1e-9):
        raise ValueError(f"{path}: was learned for eps {meta.get('epsilon')}, not {epsilon}")
    return tensors, meta


def load_network(path, name, policy, epsilon, module, what):
    """Load a saved `name` attack for this victim and eps into `module` (in place); returns its metadata.
    ValueError naming the file if it is another attack, victim or eps, or the network does not match."""
    from attacks.checkpoint import policy_hash

    tensors, meta = load_attack(path, name, policy_hash(policy), epsilon)
    try:
        module.load_state_dict(tensors)
    except RuntimeError as e:
        raise ValueError(f"{path}: {what} does not match the settings ({str(e).splitlines()[0]})") from None
    return meta


def cache_path(victim_path, victim_hash, name, settings):
    """`<victim_path>.attacks/<name>-<16 hex>.safetensors`, keyed by the victim's hash and the attack's settings
    (pass everything that changes what is learned: attack.settings plus the fit's steps and seed)."""
    key = hashlib.sha256((victim_hash + json.dumps(settings, sort_keys=True, default=str)).encode()).hexdigest()[:16]
    return f"{victim_path}.attacks/{name}-{key}.safetensors"


def fit_or_load(attack, cache, env_id, steps, seed, progress=False):
    """Load `attack` from `cache` if the file exists, else fit it and save it there (atomically). Returns True if
    loaded. progress: how the fit reports, "bar", "lines" or False (see FitProgress)."""
    if os.path.exists(cache):
        attack.load(cache)
        return True
    folder = os.path.dirname(os.path.abspath(cache))
    os.makedirs(folder, exist_ok=True)  # before fitting: an unwritable cache must not cost a 1M-step fit
    if not os.access(folder, os.W_OK):
        raise OSError(f"{folder}: cannot write the attack cache here")
    attack.fit(env_id, steps, seed, progress=progress)
    attack.save(cache)
    return False


def fit_many(attacks, env_id, steps, seed, progress=False):
    """Fit learned attacks of one kind, one per victim, side by side (train_ppo_many): each ends as its own
    fit(env_id, steps, seed) would, to float32 rounding. (fit_job takes the budget because the arena's shaping
    schedule is a share of it; the other attacks do not use it.)"""
    jobs = [attack.fit_job(env_id, seed, steps) for attack in attacks]
    logs = train_ppo_many(jobs, env_id, steps, attacks[0].cfg, progress)
    for attack, job, log in zip(attacks, jobs, logs):
        attack.agent, attack.log, attack.fitted = job.agent, log, True


def config_from(settings):
    """PPOConfig with the given overrides (unknown keys are an error); hidden_sizes kept as a tuple."""
    cfg = PPOConfig(**settings)
    cfg.hidden_sizes = tuple(cfg.hidden_sizes)
    return cfg


def config_dict(cfg):
    d = asdict(cfg)
    d["hidden_sizes"] = list(cfg.hidden_sizes)
    return d
