"""RS, the robust Sarsa attack (Zhang et al. 2020, "Robust Deep Reinforcement Learning against Adversarial
Perturbations on State Observations", NeurIPS; SA-MDP paper, Sec. 6 and App. D).

1. Learn the victim's action value Q^pi(s, a) from its own rollouts (Gaussian actions a = mu + std * noise) by
   TD(0) Sarsa with a robustness regularizer that keeps Q flat in a small l_inf ball around the data's actions:
       L(Q) = E[(Q(s,a) - r - gamma * (1 - term) * Q'(s',a'))^2] + reg * E[max_{||a~ - a||_inf <= action_eps} (Q(s,a~) - Q(s,a))^2]
   a' = the victim's action at the true successor s' (a time-limit truncation bootstraps, a termination does not);
   Q' = a Polyak-averaged target copy of Q. The inner max: PGD (random start in the ball, 3 sign steps), where the
   paper bounds it with a convex relaxation (auto_LiRPA); squared deviation as in the SA-PPO code.
2. Attack: x_hat = argmin_{||x_hat - x||_inf <= eps} Q(x, mu(x_hat)) by 10 sign-gradient steps of eps/10 from x
   (the state input of Q stays the clean x).
Several Q's are trained (RS_GRID) and the evaluation reports the strongest, as the paper does with its grid.
Q is learned on rewards scaled by (1 - gamma) / rms(r), so values are O(1) on every task.
"""
import copy
import json
import math

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from attacks.checkpoint import policy_hash
from attacks.ppo_adversary import (
    MLP,
    FitProgress,
    forward_invariant,
    load_network,
    numpy_mlp,
    numpy_normalizer,
    save_attack,
)

NAME = "rs"
DEFAULT_STEPS = 200_000  # victim transitions per Q (SA-PPO's sarsa training collected ~10^5-10^6)
RS_GRID = [dict(reg=0.0), dict(reg=0.1), dict(reg=1.0)]


def label(settings):
    """`rs[reg=0.1]`: the settings that RS_GRID varies, which are what tells the grid's Q functions apart in a log."""
    keys = sorted({k for entry in RS_GRID for k in entry})
    return f"{NAME}[{', '.join(f'{k}={settings[k]}' for k in keys)}]"


class QNet(nn.Module):
    def __init__(self, obs_dim, act_dim, hidden_sizes=(64, 64)):
        super().__init__()
        self.q = MLP((obs_dim + act_dim, *hidden_sizes, 1), out_std=1.0)

    def forward(self, x, a):
        return self.q(torch.cat([x, a], dim=1)).view(-1)

    def invariant(self, x, a):
        """forward() with each row independent of the batch (for the attack; see forward_invariant)."""
        return forward_invariant(self.q, torch.cat([x, a], dim=1)).view(-1)


def reward_scale(r, gamma):
    """(1 - gamma) / rms(r): Q learns on rewards of this scale, so its values are O(1) on every task."""
    return (1.0 - gamma) / max(float(np.sqrt(np.mean(r ** 2))), 1e-8)


def sarsa_targets(q, r, x2, a2, terminal, gamma):
    """TD(0) Sarsa targets r + gamma * Q(s', a') for the true successors (s', a'); no bootstrap after a termination."""
    with torch.no_grad():
        return r + gamma * (1.0 - terminal) * q(x2, a2)


def collect(policy, env_id, steps, seed, num_envs=8, progress=None, desc=NAME):
    """The victim's own rollouts with its Gaussian exploration: dict of numpy arrays x, a, r, x2, a2, terminal
    ([steps, ...]). x2 is the normalized true successor (the final observation when an episode ends, not the reset
    one) and a2 the victim's sampled action there, which is the next row's action whenever the episode goes on.
    progress: "bar", "lines" or None (attacks.ppo_adversary.FitProgress)."""
    envs = [gym.make(env_id) for _ in range(num_envs)]
    low, high = envs[0].action_space.low, envs[0].action_space.high
    normalize, mean = numpy_normalizer(policy.obs_norm), numpy_mlp(policy.actor)
    std = np.exp(policy.actor.log_std.detach().float().numpy())
    rng = np.random.default_rng(seed)
    T = math.ceil(steps / num_envs)
    k = std.shape[0]
    out = {key: [] for key in ("x", "a", "r", "x2", "a2", "terminal")}
    x = normalize(np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]))
    pbar = FitProgress(progress, T * num_envs, desc)
    a = mean(x) + std * rng.standard_normal((num_envs, k)).astype(np.float32)
    succ_raw, reset_raw = np.zeros((num_envs, x.shape[1])), np.zeros((num_envs, x.shape[1]))
    r, term, ended = np.zeros(num_envs), np.zeros(num_envs), np.zeros(num_envs, dtype=bool)
    for _ in range(T):
        act = np.clip(a, low, high)
        for i, env in enumerate(envs):
            o, r[i], terminated, truncated, _ = env.step(act[i])
            succ_raw[i], term[i], ended[i] = o, terminated, terminated or truncated
            reset_raw[i] = env.reset()[0] if ended[i] else o
        x2 = normalize(succ_raw)
        a2 = mean(x2) + std * rng.standard_normal((num_envs, k)).astype(np.float32)
        for key, v in zip(out, (x, a, r, x2, a2, term)):
            out[key].append(np.array(v, dtype=np.float32))
        x, a = x2.copy(), a2.copy()
        if ended.any():  # a new episode starts from the reset observation
            x[ended] = normalize(reset_raw[ended])
            a[ended] = mean(x[ended]) + std * rng.standard_normal((int(ended.sum()), k)).astype(np.float32)
        pbar.update(num_envs)
    pbar.close()
    for env in envs:
        env.close()
    # [T, N, ...] -> [T * N, ...] (row t * N + i), trimmed to `steps`
    return {key: np.stack(v).reshape(T * num_envs, *v[0].shape[1:])[:steps] for key, v in out.items()}


# settings a stacked fit shares across its Q functions (reg and epsilon may differ: epsilon is the attack's, not the fit's)
STACKED = ("action_eps", "hidden_sizes", "gamma", "learning_rate", "epochs", "batch_size", "tau", "reg_steps")


def fit_many(attacks, env_id, steps, seed=0, progress=False):
    """Fit several RobustSarsaAttack's side by side (what eval_attacks.py does; fit() one at a time is the reference):
    each victim's rollouts are collected once (every Q of a victim trains on the same `collect(..., seed)` data, as
    its own fit() would collect it), and the Q functions of each group of equal STACKED settings train as one stacked
    network: batched matmuls over the Q functions, one Adam on the stacked weights (elementwise, so each Q's update is
    its own), each Q's minibatch order and PGD starts from its own generator in the order fit() draws them. Each Q
    ends where its own fit() ends to float32 rounding (the sign steps of the regularizer's PGD can amplify a last-bit
    difference: another sample of the same fit)."""
    data = {}  # (victim, num_envs) -> (collected data, reward scale)
    for attack in attacks:
        key = (policy_hash(attack.policy), attack.settings["num_envs"])
        if key not in data:
            d = collect(attack.policy, env_id, steps, seed, attack.settings["num_envs"], progress, f"{NAME} collecting")
            data[key] = (d, reward_scale(d["r"], attack.settings["gamma"]))
    same = {}  # attacks whose fits are identical (they differ in epsilon only): fitted once
    for attack in attacks:
        key = (policy_hash(attack.policy), json.dumps({k: v for k, v in attack.settings.items() if k != "epsilon"}, sort_keys=True))
        same.setdefault(key, []).append(attack)
    groups = {}
    for twins in same.values():
        groups.setdefault(tuple(str(twins[0].settings[k]) for k in STACKED), []).append(twins[0])
    for group in groups.values():
        _fit_stacked(group, [data[(policy_hash(a.policy), a.settings["num_envs"])] for a in group], seed, progress)
    for first, *rest in same.values():
        for attack in rest:
            attack.q, attack.reward_scale, attack.log, attack.fitted = copy.deepcopy(first.q), first.reward_scale, first.log, True


def _fit_stacked(group, datas, seed, progress):
    s, K = group[0].settings, len(group)
    victims = {}  # one copy of each victim's data; row k of the stack reads victim vidx[k]'s
    vidx = torch.tensor([victims.setdefault(id(d), len(victims)) for d, _ in datas], dtype=torch.long)
    unique = {id(d): d for d, _ in datas}
    stack = lambda key: torch.from_numpy(np.stack([unique[i][key] for i in victims]).astype(np.float32))  # [V, n, ...]
    x, a, x2, a2, terminal, r = (stack(k) for k in ("x", "a", "x2", "a2", "terminal", "r"))
    scales = [scale for _, scale in datas]
    qs = []
    for _ in group:  # each Q initialized as its own fit() initializes it
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            qs.append(QNet(group[0].obs_dim, group[0].act_dim, tuple(s["hidden_sizes"])))
    n_layers = len(qs[0].q.layers)
    # layer j: weight [K, in, out] (transposed, for baddbmm), bias [K, 1, out]
    params = [torch.stack([q.q.layers[j].weight.detach().T for q in qs]).contiguous().requires_grad_(True) for j in range(n_layers)]
    params += [torch.stack([q.q.layers[j].bias.detach() for q in qs]).unsqueeze(1).contiguous().requires_grad_(True) for j in range(n_layers)]
    target = [p.detach().clone() for p in params]
    optimizer = torch.optim.Adam(params, lr=s["learning_rate"])
    gens = [torch.Generator().manual_seed(seed) for _ in group]
    regs = torch.tensor([a.settings["reg"] for a in group], dtype=torch.float32)
    robust = [k for k in range(K) if group[k].settings["reg"] > 0]
    R = torch.tensor(robust, dtype=torch.long)

    def qf(ps, xs, acts):  # the stacked Q: [K', b, obs], [K', b, act] -> [K', b]
        h = torch.cat([xs, acts], dim=2)
        for j in range(n_layers - 1):
            h = torch.tanh(torch.baddbmm(ps[n_layers + j], h, ps[j]))
        return torch.baddbmm(ps[2 * n_layers - 1], h, ps[n_layers - 1]).squeeze(2)

    n, bs, radius, steps_pgd = x.shape[1], s["batch_size"], s["action_eps"], s["reg_steps"]
    updates = s["epochs"] * math.ceil(n / bs)
    pbar = FitProgress(progress, updates * K, f"{NAME} TD", unit="updates")  # the updates of all K Q functions
    logs = [[] for _ in group]
    rows = vidx.view(K, 1)
    r_scale = torch.tensor(scales, dtype=torch.float32).view(K, 1)  # each Q's rewards scaled as its own fit() scales them
    for epoch in range(s["epochs"]):
        perm = torch.stack([torch.randperm(n, generator=g) for g in gens])  # [K, n]
        td_sum, reg_sum = torch.zeros(K), torch.zeros(K)
        for start in range(0, n, bs):
            mb = perm[:, start:start + bs]
            xb, ab = x[rows, mb], a[rows, mb]
            with torch.no_grad():
                y = r[rows, mb] * r_scale + s["gamma"] * (1.0 - terminal[rows, mb]) * qf(target, x2[rows, mb], a2[rows, mb])
            q_sa = qf(params, xb, ab)
            td = ((q_sa - y) ** 2).mean(1)
            loss = td.sum()
            if robust:
                sub = [p[R] for p in params]
                xr, ar, q_r = xb[R], ab[R], q_sa[R]
                start_noise = torch.stack([torch.rand(ar.shape[1:], generator=gens[k]) for k in robust])
                a_adv = ar + radius * (2 * start_noise - 1)
                for _ in range(steps_pgd):  # as _worst_action, for every robust Q at once
                    a_adv.requires_grad_(True)
                    (grad,) = torch.autograd.grad(((qf([p.detach() for p in sub], xr, a_adv) - q_r.detach()) ** 2).sum(), a_adv)
                    a_adv = ar + (a_adv.detach() + 2.5 * radius / steps_pgd * grad.sign() - ar).clamp(-radius, radius)
                reg_loss = ((qf(sub, xr, a_adv.detach()) - q_r) ** 2).mean(1)
                loss = loss + (regs[R] * reg_loss).sum()
                reg_sum[R] += reg_loss.detach()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for p_t, p in zip(target, params):
                    p_t.lerp_(p, s["tau"])
            td_sum += td.detach()
        batches = math.ceil(n / bs)
        for k in range(K):
            logs[k].append(dict(epoch=epoch, td_loss=float(td_sum[k]) / batches, reg_loss=float(reg_sum[k]) / batches))
        pbar.update(batches * K, td_loss=f"{float(td_sum.mean()) / batches:.4f}")
    pbar.close()
    for k, attack in enumerate(group):
        q = QNet(attack.obs_dim, attack.act_dim, tuple(s["hidden_sizes"]))
        with torch.no_grad():
            for j, layer in enumerate(q.q.layers):
                layer.weight.copy_(params[j][k].T)
                layer.bias.copy_(params[n_layers + j][k, 0])
        attack.q, attack.reward_scale, attack.log, attack.fitted = q.requires_grad_(False), scales[k], logs[k], True


class RobustSarsaAttack:
    name = NAME

    def __init__(self, policy, epsilon, reg=0.1, action_eps=0.1, attack_steps=10, hidden_sizes=(64, 64), gamma=0.99,
                 learning_rate=1e-3, epochs=30, batch_size=256, tau=0.005, reg_steps=3, num_envs=8):
        """reg: weight of the robustness regularizer; action_eps: its l_inf radius in action units; epochs over the
        collected data of minibatch (batch_size) TD updates; tau: Polyak rate of the target Q."""
        self.policy, self.epsilon = policy, float(epsilon)
        self.obs_dim, self.act_dim = policy.actor.layers[0].in_features, policy.actor.layers[-1].out_features
        self.settings = dict(epsilon=self.epsilon, reg=float(reg), action_eps=float(action_eps), attack_steps=int(attack_steps),
                             hidden_sizes=list(hidden_sizes), gamma=float(gamma), learning_rate=float(learning_rate), epochs=int(epochs),
                             batch_size=int(batch_size), tau=float(tau), reg_steps=int(reg_steps), num_envs=int(num_envs))
        self.label = label(self.settings)
        with torch.random.fork_rng():  # no draw from the caller's RNG
            torch.manual_seed(0)
            self.q = QNet(self.obs_dim, self.act_dim, tuple(hidden_sizes)).requires_grad_(False)
        self.fitted = False

    def fit(self, env_id, steps=DEFAULT_STEPS, seed=0, progress=False):
        """Collect `steps` victim transitions, then train Q on them; progress: "bar" (or True), "lines" or False,
        reported per phase (collecting: env steps; TD: minibatch updates, 60-90% of the time)."""
        s = self.settings
        data = collect(self.policy, env_id, steps, seed, s["num_envs"], progress, f"{self.label} collecting")
        scale = reward_scale(data["r"], s["gamma"])
        x, a, x2, a2 = (torch.from_numpy(data[k]) for k in ("x", "a", "x2", "a2"))
        r, terminal = torch.from_numpy(data["r"] * np.float32(scale)), torch.from_numpy(data["terminal"])
        with torch.random.fork_rng():  # a fresh Q from `seed`, without touching the caller's RNG
            torch.manual_seed(seed)
            q = QNet(self.obs_dim, self.act_dim, tuple(s["hidden_sizes"]))
        target = copy.deepcopy(q).requires_grad_(False)
        optimizer = torch.optim.Adam(q.parameters(), lr=s["learning_rate"])
        gen = torch.Generator().manual_seed(seed)
        n, bs, radius = x.shape[0], s["batch_size"], s["action_eps"]
        updates = s["epochs"] * math.ceil(n / bs)
        pbar = FitProgress(progress, updates, f"{self.label} TD", unit="updates")
        self.log = []
        for epoch in range(s["epochs"]):
            perm = torch.randperm(n, generator=gen)
            td_sum = reg_sum = 0.0
            for start in range(0, n, bs):
                mb = perm[start:start + bs]
                y = sarsa_targets(target, r[mb], x2[mb], a2[mb], terminal[mb], s["gamma"])
                q_sa = q(x[mb], a[mb])
                td = ((q_sa - y) ** 2).mean()
                loss = td
                if s["reg"] > 0:
                    a_adv = self._worst_action(q, x[mb], a[mb], q_sa.detach(), radius, s["reg_steps"], gen)
                    reg_loss = ((q(x[mb], a_adv) - q_sa) ** 2).mean()
                    loss = td + s["reg"] * reg_loss
                    reg_sum += reg_loss.item()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    for p_t, p in zip(target.parameters(), q.parameters()):
                        p_t.lerp_(p, s["tau"])
                td_sum += td.item()
            batches = math.ceil(n / bs)
            self.log.append(dict(epoch=epoch, td_loss=td_sum / batches, reg_loss=reg_sum / batches))
            pbar.update(batches, td_loss=f"{td_sum / batches:.4f}", reg_loss=f"{reg_sum / batches:.4f}")
        pbar.close()
        self.q = q.requires_grad_(False)
        self.reward_scale = scale
        self.fitted = True
        return self

    @staticmethod
    def _worst_action(q, x, a, q_sa, radius, steps, gen):
        """Approximately argmax_{||a~ - a||_inf <= radius} (Q(x, a~) - Q(x, a))^2: random start, `steps` sign steps."""
        a_adv = a + radius * (2 * torch.rand(a.shape, generator=gen) - 1)
        for _ in range(steps):
            a_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(((q(x, a_adv) - q_sa) ** 2).sum(), a_adv)
            a_adv = a + (a_adv.detach() + 2.5 * radius / steps * grad.sign() - a).clamp(-radius, radius)
        return a_adv.detach()

    def __call__(self, x, gens=None):
        if not self.fitted:
            raise RuntimeError("rs: fit() or load() the Q function before attacking")
        eps, steps = self.epsilon, self.settings["attack_steps"]
        delta = torch.zeros_like(x)
        for _ in range(steps):
            delta.requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(self.q.invariant(x, self.policy.actor(x + delta)).sum(), delta)
            delta = (delta.detach() - (eps / steps) * grad.sign()).clamp(-eps, eps)
        return x + delta

    def save(self, path):
        meta = dict(settings=self.settings, epsilon=self.epsilon, victim_hash=policy_hash(self.policy), reward_scale=getattr(self, "reward_scale", None))
        save_attack(path, NAME, self.q.state_dict(), meta)

    def load(self, path):
        meta = load_network(path, NAME, self.policy, self.epsilon, self.q, "Q network")
        self.reward_scale = meta.get("reward_scale")
        self.fitted = True
        return self
