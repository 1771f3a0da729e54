"""Milliseconds per PPO minibatch update with N seeds in one process (the coming --num-seeds N), batched over seeds
two ways, next to the plain per-seed loop:
    stacked  one nn.Parameter per layer for all seeds ([N, in, out] weights), torch.baddbmm forward, per-seed losses
             reduced over dim 1 and summed over seeds, one backward, one fused Adam
    vmap     N unchanged ppo_continuous.Agent copies stacked with torch.func.stack_module_state, per-seed gradients
             from vmap(grad(loss)) written into the stacked parameters' .grad, one fused Adam
    single   N separate Agents, each with its own fused Adam, updated one after the other (the baseline)
One update = ppo_continuous.py's per-minibatch work: actor and critic forward, Gaussian log-prob written out as in
Agent.get_action_and_value, clipped surrogate with per-minibatch advantage normalization, clipped value loss,
backward, fused Adam (actor and critic groups at HalfCheetah's lrs); not the no-grad diagnostics nor the entropy term
(ent_coef is 0 in every config). Table: min over --repeats (configurations in turn) of the median of --updates
updates after --warmup. Check: one update's per-seed gradients, and weights after Adam, of stacked/vmap vs single.

    python benchmark/seed_batching.py                    # N = 1, 8, 16: about a minute on an idle core
    python benchmark/seed_batching.py --json benchmark/results/seed_batching.json
"""

import argparse
import copy
import json
import math
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.func import functional_call, grad, stack_module_state, vmap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ppo_continuous import ENV_DEFAULTS  # noqa: E402
from ppo_continuous import Args as PPOArgs  # noqa: E402


class MLP(torch.nn.Module):
    def __init__(self, sizes, out_std):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        for i, layer in enumerate(self.layers):
            torch.nn.init.orthogonal_(layer.weight, out_std if i == len(self.layers) - 1 else math.sqrt(2))
            torch.nn.init.zeros_(layer.bias)

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = torch.tanh(layer(x))
        return self.layers[-1](x)


class Agent(torch.nn.Module):
    """One seed's agent as ppo_continuous.py had it before --num-seeds (nn.Linear MLPs, an [act_dim] log-std, the same
    parameter names): the unbatched baseline, and what vmap batches."""

    def __init__(self, obs_dim, act_dim, args):
        super().__init__()
        self.critic = MLP((obs_dim, *args.hidden_sizes, 1), 1.0)
        self.actor = MLP((obs_dim, *args.hidden_sizes, act_dim), 0.01)
        self.actor.log_std = torch.nn.Parameter(torch.full((act_dim,), math.log(args.init_std)))

    def get_action_and_value(self, x, action):
        mean, log_std = self.actor(x), self.actor.log_std
        logprob = -0.5 * (((action - mean) * torch.exp(-log_std)) ** 2).sum(1) - (log_std.sum() + 0.5 * math.log(2 * math.pi) * mean.shape[1])
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum().expand(mean.shape[0])
        return action, logprob, entropy, self.critic(x)


CFG = ENV_DEFAULTS["HalfCheetah"]  # learning rates of the config mimicked (its clip_vloss is True, as here)
CLIP, VF_COEF = 0.2, 0.5  # ppo_continuous.Args defaults


def adam(actor_params, critic_params):
    # as ppo_continuous.py: two groups (actor and critic learning rates differ), fused = one kernel per tensor
    return torch.optim.Adam([{"params": list(actor_params), "lr": CFG["learning_rate"]},
                             {"params": list(critic_params), "lr": CFG["value_learning_rate"]}], eps=1e-5, fused=True)


def ppo_loss(logprob, value, old_logprob, adv, ret, old_value, dim):
    """ppo_continuous.py's minibatch loss; dim=-1 reduces one seed's [B] tensors or each row of [N, B] tensors."""
    ratio = (logprob - old_logprob).exp()
    adv = (adv - adv.mean(dim, keepdim=True)) / (adv.std(dim, keepdim=True) + 1e-8)
    pg_loss = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - CLIP, 1 + CLIP)).mean(dim)
    v_clipped = old_value + torch.clamp(value - old_value, -CLIP, CLIP)
    v_loss = 0.5 * torch.max((value - ret) ** 2, (v_clipped - ret) ** 2).mean(dim)
    return pg_loss + VF_COEF * v_loss


def agent_loss(get_action_and_value, x, a, *rest):
    _, logprob, _, value = get_action_and_value(x, a)
    return ppo_loss(logprob, value.view(-1), *rest, dim=-1)


class Single:
    def __init__(self, agents):
        self.agents = [copy.deepcopy(ag) for ag in agents]
        self.opts = [adam(ag.actor.parameters(), ag.critic.parameters()) for ag in self.agents]

    def step(self, mbs):  # one minibatch per seed, split beforehand so that the timing leaves out the indexing
        for agent, opt, mb in zip(self.agents, self.opts, mbs):
            opt.zero_grad()
            agent_loss(agent.get_action_and_value, *mb).backward()
            opt.step()

    def named(self, attr):  # {Agent parameter name: [N, ...]} of the weights ("data") or their gradients ("grad")
        per_seed = [dict(ag.named_parameters()) for ag in self.agents]
        return {k: torch.stack([getattr(p[k], attr) for p in per_seed]) for k in per_seed[0]}


class Vmap:
    def __init__(self, agents):
        self.params, self.buffers = stack_module_state(agents)  # copies: the agents stay untouched
        base = copy.deepcopy(agents[0]).to("meta")  # structure only; functional_call swaps the weights in
        base.forward = base.get_action_and_value  # functional_call calls forward, which Agent does not define

        def loss(params, buffers, *mb):  # one seed's loss; the aux output is its value, which training would log
            value = agent_loss(lambda x, a: functional_call(base, (params, buffers), (x, a)), *mb)
            return value, value.detach()

        self.grad = vmap(grad(loss, has_aux=True))  # in_dims=0 everywhere: weights, buffers and data per seed
        self.opt = adam(*([p for k, p in self.params.items() if k.startswith(net)] for net in ("actor.", "critic.")))

    def step(self, mb):
        grads, _ = self.grad(self.params, self.buffers, *mb)
        for k, p in self.params.items():
            p.grad = grads[k]
        self.opt.step()

    def named(self, attr):
        return {k: getattr(p, attr) for k, p in self.params.items()}


class Stacked:
    def __init__(self, agents):
        per_seed = [dict(ag.named_parameters()) for ag in agents]
        self.p = {k: torch.nn.Parameter(self.layout(k, torch.stack([p[k].detach() for p in per_seed]), True))
                  for k in per_seed[0]}  # Agent's names, one [N, ...] leaf each
        self.layers = {net: [(self.p[f"{net}.layers.{i}.weight"], self.p[f"{net}.layers.{i}.bias"])
                             for i in range(len(agents[0].actor.layers))] for net in ("actor", "critic")}
        self.opt = adam(*([p for k, p in self.p.items() if k.startswith(net)] for net in ("actor.", "critic.")))

    @staticmethod
    def layout(name, t, stacked):
        """Agent's layout (stacked over seeds) to ours or back: weights [N, out, in] <-> [N, in, out] (baddbmm computes
        x @ W, no transpose); biases and log-std [N, out] <-> [N, 1, out] (broadcast over the minibatch)."""
        if name.endswith("weight"):
            return t.transpose(1, 2).contiguous()
        return t.unsqueeze(1) if stacked else t.squeeze(1)

    def mlp(self, net, x):
        *hidden, (w, b) = self.layers[net]
        for wi, bi in hidden:
            x = torch.tanh(torch.baddbmm(bi, x, wi))
        return torch.baddbmm(b, x, w)

    def step(self, mb):
        (x, a, *rest), log_std = mb, self.p["actor.log_std"]  # [N, B, ...] and [N, 1, act]
        mean = self.mlp("actor", x)
        logprob = -0.5 * (((a - mean) * torch.exp(-log_std)) ** 2).sum(2) - (
            log_std.sum(2) + 0.5 * math.log(2 * math.pi) * mean.shape[2])
        # the seeds share no parameter, so the sum's gradient w.r.t. seed i's weights is that of seed i's loss alone
        loss = ppo_loss(logprob, self.mlp("critic", x).squeeze(2), *rest, dim=1).sum()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def named(self, attr):  # back to Agent's layout, to compare with Single
        return {k: self.layout(k, getattr(p, attr), False) for k, p in self.p.items()}


IMPLS = {"single": Single, "stacked": Stacked, "vmap": Vmap}


def setup(args, n, num_minibatches=8):
    """n fresh agents and minibatches like a rollout's: actions sampled by each agent itself (ratios start near 1,
    so the clipping does what it does in training), returns near the values; as [N, B, ...] and per seed."""
    torch.manual_seed(n)
    ppo_args = PPOArgs(env_id="HalfCheetah-v4", init_std=0.5, hidden_sizes=tuple(args.hidden_sizes))
    agents = [Agent(args.obs_dim, args.act_dim, ppo_args) for _ in range(n)]
    rows, per_seed = args.minibatch * num_minibatches, []
    with torch.no_grad():
        for ag in agents:
            x = torch.randn(rows, args.obs_dim)  # normalized observations
            a, logprob, _, value = ag.get_action_and_value(x)
            per_seed.append((x, a, logprob, torch.randn(rows), value.view(-1) + torch.randn(rows), value.view(-1)))
    stacked = [tuple(torch.stack([t.view(num_minibatches, args.minibatch, *t.shape[1:])[m] for t in ts]).contiguous()
                     for ts in zip(*per_seed)) for m in range(num_minibatches)]
    return agents, stacked, [[tuple(t[i] for t in mb) for i in range(n)] for mb in stacked]


def median_ms(impl, pool, updates, warmup):
    times = []
    for k in range(warmup + updates):
        t0 = time.perf_counter()
        impl.step(pool[k % len(pool)])
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times[warmup:])


def check(args):
    # worst |diff| to single over tensors and seeds, for gradients also relative to the tensor's max |value|
    agents, stacked_pool, single_pool = setup(args, args.check_seeds)
    (ref := Single(agents)).step(single_pool[0])
    out = {}
    for name in ("stacked", "vmap"):
        (impl := IMPLS[name](agents)).step(stacked_pool[0])
        for attr in ("grad", "data"):  # data: the weights after the Adam step (catches swapped lrs or groups)
            a, b = impl.named(attr), ref.named(attr)
            diff = {k: (a[k] - b[k]).abs().max().item() for k in b}
            out[f"{name} {attr}"] = dict(max_abs_diff=max(diff.values()), tensors=len(b),
                                         max_rel_diff=max(d / b[k].abs().max().item() for k, d in diff.items()),
                                         bit_identical=sum(torch.equal(a[k], b[k]) for k in b))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 8, 16], help="numbers of seeds N to time")
    p.add_argument("--minibatch", type=int, default=64, help="states per minibatch (2048 steps / 32 minibatches)")
    p.add_argument("--obs-dim", type=int, default=17, help="observation size (HalfCheetah 17)")
    p.add_argument("--act-dim", type=int, default=6, help="action size (HalfCheetah 6)")
    p.add_argument("--hidden-sizes", type=int, nargs="+", default=[64, 64], help="hidden layers (tanh)")
    p.add_argument("--updates", type=int, default=200, help="timed updates per median")
    p.add_argument("--warmup", type=int, default=30, help="untimed updates before each timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per configuration; the table shows the min")
    p.add_argument("--check-seeds", type=int, default=8, help="N for the gradient check")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(1)  # as the training scripts (Args.torch_threads): the other cores run other processes
    started = datetime.now(timezone.utc)
    correctness = check(args)
    setups = {n: setup(args, n) for n in args.seeds}
    impls = {(name, n): IMPLS[name](setups[n][0]) for n in args.seeds for name in IMPLS}
    medians = {key: [] for key in impls}
    for _ in range(args.repeats):  # in turn, so that a burst of load from other users hits every configuration alike
        for (name, n), impl in impls.items():
            medians[name, n].append(median_ms(impl, setups[n][2 if name == "single" else 1], args.updates, args.warmup))
    base = min(medians.get(("single", 1), [math.nan]))
    rows = [dict(impl=name, seeds=n, ms_per_update=min(ms), ms_per_seed=min(ms) / n, medians_ms=ms,
                 speedup_per_seed=base * n / min(ms)) for (name, n), ms in medians.items()]
    print(f"{started:%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, 1 thread, minibatch {args.minibatch}, obs "
          f"{args.obs_dim}, act {args.act_dim}, hidden {args.hidden_sizes}: min of {args.repeats} medians of "
          f"{args.updates} updates\nseeds     impl  ms/update  ms/seed  per-seed speed-up vs single N=1")
    for r in rows:
        print("{seeds:>5} {impl:>8} {ms_per_update:>10.3f} {ms_per_seed:>8.3f} {speedup_per_seed:>31.2f}x".format(**r))
    print(f"check, N={args.check_seeds}, one update against single's (max |diff| over all tensors and seeds; "
          f"float32 eps 1.2e-7):")
    for key, c in correctness.items():
        rel = f" ({c['max_rel_diff']:.1e} of the tensor's max |value|)" if key.endswith("grad") else ""
        print(f"  {key.replace('data', 'weights after Adam'):<26} {c['max_abs_diff']:.2e}{rel}, "
              f"{c['bit_identical']}/{c['tensors']} tensors bit-identical")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(date_utc=started.isoformat(timespec="seconds"), command=" ".join(sys.argv), args=vars(args),
                           torch=torch.__version__, results=rows, correctness=correctness), f, indent=1)


if __name__ == "__main__":
    main()
