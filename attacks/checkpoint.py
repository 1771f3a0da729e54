"""Read a robust-rl checkpoint (docs/checkpoint.md) with nothing but safetensors: no pickle, no training script.

    policy, meta = load_checkpoint("runs/.../ppo_continuous.safetensors", env_id="HalfCheetah-v4")
    x = policy.normalize(obs)          # frozen normalizer, clipped: the space every attack perturbs
    a = policy.actor(x)                # deterministic action (mean head, no squashing)

Every problem (missing, truncated, foreign or mismatched file) raises CheckpointError with a one-line message
that names the file; command-line tools turn it into `error: ...` and exit status 2.
"""
import hashlib
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn

FORMAT = 1
# l_inf attack budgets in normalized-observation units (docs/protocol.md; the BARPO / SA-PPO papers)
EPSILONS = {"Hopper": 0.075, "Walker2d": 0.05, "HalfCheetah": 0.15, "Ant": 0.15, "Humanoid": 0.075}


class CheckpointError(Exception):
    pass


def default_epsilon(env_id):
    return EPSILONS.get(env_id.split("-")[0])


class _MLP(nn.Module):
    """batch_invariant: row i's output does not depend on the batch it is in. BLAS matmuls pick kernels by batch
    size (last-bit differences that MuJoCo amplifies over 1,000 steps); a broadcast multiply-and-sum does not,
    so N episodes run together return exactly what they return one at a time."""

    def __init__(self, weights, biases, activation, batch_invariant=True):
        super().__init__()
        self.batch_invariant = batch_invariant
        self.layers = nn.ModuleList()
        for w, b in zip(weights, biases):
            layer = nn.Linear(w.shape[1], w.shape[0])
            layer.weight.data.copy_(w)
            layer.bias.data.copy_(b)
            self.layers.append(layer)
        self.act = torch.tanh if activation == "tanh" else torch.relu

    def linear(self, layer, x):
        return (x.unsqueeze(-2) * layer.weight).sum(-1) + layer.bias if self.batch_invariant else layer(x)

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = self.act(self.linear(layer, x))
        return self.linear(self.layers[-1], x)


class Policy(nn.Module):
    """A frozen victim: normalizer buffers, actor (mean head + log_std), critic. Same attribute names as the
    training scripts' Agent (obs_norm, actor, actor.log_std, critic), so the evaluation code accepts either."""

    def __init__(self, tensors, meta, batch_invariant=True):
        super().__init__()
        self.meta = meta

        def layers(prefix):
            n = len([k for k in tensors if k.startswith(prefix) and k.endswith(".weight")])
            return [tensors[f"{prefix}layers.{i}.weight"].float() for i in range(n)], [tensors[f"{prefix}layers.{i}.bias"].float() for i in range(n)]

        self.actor = _MLP(*layers("actor/"), meta["activation"], batch_invariant)
        self.actor.log_std = nn.Parameter(tensors["actor/log_std"].float().reshape(-1))
        self.critic = _MLP(*layers("critic/"), meta["activation"], batch_invariant) if "critic/layers.0.weight" in tensors else None
        self.obs_norm = _Normalizer(tensors["obs_norm/mean"], tensors["obs_norm/var"], tensors["obs_norm/count"], meta["obs_clip"], meta["norm_eps"])
        self.requires_grad_(False)

    def normalize(self, obs):
        return self.obs_norm.normalize_np(obs)


class _Normalizer(nn.Module):
    def __init__(self, mean, var, count, clip, eps):
        super().__init__()
        self.register_buffer("mean", mean.double().reshape(-1))
        self.register_buffer("var", var.double().reshape(-1))
        self.register_buffer("count", count.double().reshape(()))
        self.clip, self.eps = float(clip), float(eps)

    def normalize_np(self, x):
        return np.clip((x - self.mean.numpy()) / np.sqrt(self.var.numpy() + self.eps), -self.clip, self.clip).astype(np.float32)

    def forward(self, x):
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + self.eps), -self.clip, self.clip).float()


def read_checkpoint(path):
    """(tensors, meta) of a checkpoint file, or CheckpointError naming the file and the problem."""
    from safetensors import SafetensorError, safe_open

    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        with safe_open(path, framework="pt") as f:
            raw = (f.metadata() or {}).get("robust_rl")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupted?): {first}") from None
    if raw is None:
        raise CheckpointError(f"{path}: not a robust-rl checkpoint (no 'robust_rl' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: the 'robust_rl' metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the 'robust_rl' metadata is not a JSON object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r}, this tool reads format {FORMAT}")
    for key in ("env_id", "obs_dim", "act_dim", "activation", "obs_clip", "norm_eps"):
        if key not in meta:
            raise CheckpointError(f"{path}: metadata lacks {key!r}")
    if meta["activation"] not in ("tanh", "relu"):
        raise CheckpointError(f"{path}: unknown activation {meta['activation']!r} (tanh or relu)")
    return tensors, meta


def load_checkpoint(path, env_id=None, obs_dim=None, act_dim=None, batch_invariant=True):
    """Rebuild the frozen Policy; env_id/obs_dim/act_dim, when given, must match the checkpoint. The env check
    compares the robot (Hopper-v4 and Hopper-v5 are the same model and observation), so a -v4 policy can be
    evaluated on -v5; another robot or other dims are refused.
    batch_invariant=False computes exactly as the training scripts' nn.Linear does (bit-for-bit)."""
    tensors, meta = read_checkpoint(path)
    if env_id is not None and meta["env_id"].split("-")[0] != env_id.split("-")[0]:
        raise CheckpointError(f"{path}: checkpoint is for {meta['env_id']}, not {env_id}")
    try:
        policy = Policy(tensors, meta, batch_invariant)
    except KeyError as e:
        raise CheckpointError(f"{path}: missing tensor {e.args[0]}") from None
    shapes = (policy.actor.layers[0].in_features, policy.actor.layers[-1].out_features, policy.obs_norm.mean.numel())
    if shapes[0] != meta["obs_dim"] or shapes[1] != meta["act_dim"] or shapes[2] != meta["obs_dim"]:
        raise CheckpointError(f"{path}: tensors (obs {shapes[0]}, act {shapes[1]}) disagree with metadata (obs {meta['obs_dim']}, act {meta['act_dim']})")
    if obs_dim is not None and obs_dim != meta["obs_dim"]:
        raise CheckpointError(f"{path}: checkpoint expects obs_dim {meta['obs_dim']}, the env has {obs_dim}")
    if act_dim is not None and act_dim != meta["act_dim"]:
        raise CheckpointError(f"{path}: checkpoint has act_dim {meta['act_dim']}, the env has {act_dim}")
    if not all(math.isfinite(v) for t in tensors.values() for v in (float(t.double().abs().max()) if t.numel() else 0.0,)):
        raise CheckpointError(f"{path}: checkpoint holds non-finite values")
    return policy, meta


def policy_hash(policy):
    """SHA-256 over the victim's actor, critic and normalizer tensors (in a fixed order)."""
    h = hashlib.sha256()
    for name, t in sorted(policy.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
