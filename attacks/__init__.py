"""The robust-rl attack suite: one flat file per attack, one interface.

    attack = MADAttack(policy, epsilon)     # policy: attacks.checkpoint.load_checkpoint(...)[0] or a training Agent
    x_hat = attack(x, gens)                 # x: [B, obs_dim] normalized observations; gens: one torch.Generator per row

x_hat = x + delta with ||delta||_inf <= epsilon and no re-clip (docs/protocol.md). Attacks never change the
victim: gradients are taken w.r.t. the perturbation only. Randomness comes from the per-row generators, so a
batch of episodes gives the same perturbations as the same episodes run one at a time.
"""
import torch


def uniform_like(x, gens):
    """U[-1, 1] noise shaped like x [B, d], row i drawn from gens[i]."""
    return torch.stack([torch.rand(x.shape[1], generator=g) for g in gens]) * 2 - 1


def normal_like(x, gens):
    """N(0, 1) noise shaped like x [B, d], row i drawn from gens[i]."""
    return torch.stack([torch.randn(x.shape[1], generator=g) for g in gens])
