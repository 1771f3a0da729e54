"""Milliseconds per BAR-PPO inner loop (barppo.sgld_kl_attack: 10 SGLD steps on one minibatch), eager and
torch.compile'd: the robust trainers' overhead over PPO is 320 of these per 2048-step iteration plus the robust loss.

    python benchmark/inner_loop.py                # eager only
    python benchmark/inner_loop.py --compile      # also torch.compile (needs a C++ compiler; ~30 s to compile)
"""

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import barppo  # noqa: E402


@dataclass
class Args:
    obs_dim: int = 17
    """observation size (HalfCheetah 17, Hopper 11)"""
    act_dim: int = 6
    """action size (HalfCheetah 6, Hopper 3)"""
    minibatch: int = 64
    """states per inner loop (the paper settings: 2048 / 32)"""
    eps: float = 0.15
    """ball radius"""
    calls: int = 300
    """timed calls (after 20 warm-up calls)"""
    compile: bool = False
    """also time torch.compile(sgld_kl_attack, dynamic=False)"""


def ms_per_call(f, calls):
    for _ in range(20):
        f()
    start = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - start) / calls * 1e3


if __name__ == "__main__":
    args = tyro.cli(Args)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    agent = barppo.Agent(args.obs_dim, args.act_dim, SimpleNamespace(obs_clip=10.0, hidden_sizes=(64, 64), activation="tanh", init_std=0.5))
    x = torch.randn(args.minibatch, args.obs_dim)
    print(f"eager: {ms_per_call(lambda: barppo.sgld_kl_attack(agent, x, args.eps), args.calls):.3f} ms per inner loop")
    if args.compile:
        compiled = torch.compile(barppo.sgld_kl_attack, dynamic=False)
        start = time.perf_counter()
        compiled(agent, x, args.eps)
        print(f"compile: {time.perf_counter() - start:.1f} s")
        print(f"compiled: {ms_per_call(lambda: compiled(agent, x, args.eps), args.calls):.3f} ms per inner loop")
