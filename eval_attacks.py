"""Evaluate saved actors: natural return and return under observation attacks (DESIGN.md section 4).

    python eval_attacks.py --model zoo/ppo_continuous__HalfCheetah-v4.safetensors --attacks fast
"""
import sys

import gymnasium as gym
import numpy as np
import torch


def evaluate(policy, env_id, episodes=50, seed=0, num_envs=None, attack=None, on_step=None):
    """Per-episode raw returns of the deterministic policy (frozen normalizer), episodes run vectorized.

    Episode k always starts from env.reset(seed=seed + k) and, if the attack draws noise, from its own
    torch.Generator seeded with seed + k: the returns do not depend on num_envs (batched == one by one).
    `attack(x, gens)` maps normalized observations [B, obs_dim] to perturbed ones (no re-clip).
    """
    num_envs = min(episodes, num_envs or episodes)
    envs = [gym.make(env_id) for _ in range(num_envs)]
    obs_dim = envs[0].observation_space.shape[0]
    low, high = envs[0].action_space.low, envs[0].action_space.high
    returns = np.zeros(episodes)
    slot_episode = [-1] * num_envs
    gens = [torch.Generator() for _ in range(num_envs)]
    obs = np.zeros((num_envs, obs_dim))
    next_episode = 0

    def start(i):
        nonlocal next_episode
        if next_episode >= episodes:
            slot_episode[i] = -1
            return
        k, next_episode = next_episode, next_episode + 1
        slot_episode[i] = k
        gens[i].manual_seed(seed + k)
        obs[i] = envs[i].reset(seed=seed + k)[0]

    for i in range(num_envs):
        start(i)
    while True:
        active = [i for i in range(num_envs) if slot_episode[i] >= 0]
        if not active:
            break
        x = torch.from_numpy(policy.obs_norm.normalize_np(obs[active]))
        if attack is not None:
            x = attack(x, [gens[i] for i in active])
        with torch.no_grad():
            act = policy.actor(x).numpy()
        act = np.clip(act, low, high)
        for j, i in enumerate(active):
            o, r, terminated, truncated, _ = envs[i].step(act[j])
            returns[slot_episode[i]] += r
            obs[i] = o
            if terminated or truncated:
                if on_step is not None:
                    on_step(1)
                start(i)
    for env in envs:
        env.close()
    return returns


if __name__ == "__main__":
    sys.exit("eval_attacks.py: the attack suite CLI is not built yet")
