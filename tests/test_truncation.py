"""The training loop's time-limit bootstrap, end to end in every training script: an episode cut by the time limit
gets gamma * V(its final observation) added to its last reward, a terminated one gets nothing (also when both flags
are set at once), and GAE sees every episode end; two_timescale_adv's attacker the same through its own critic. Runs
one rollout of each script's own main block on a toy env in this process, with compute_gae wrapped to see what the
loop hands it."""
import os
import signal
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ROOT
from gymnasium.envs.mujoco.inverted_pendulum_v4 import InvertedPendulumEnv

TIME_LIMIT = 5


class TruncToy(InvertedPendulumEnv):
    """InvertedPendulum's physics (the scripts train MuJoCo envs only) with reward 0, so the scaled reward is exactly 0
    and a stored reward is the bootstrap alone, and its own episode ends: episode k (k = 0 at the first reset) is cut by
    the time limit if k % 3 == 0, terminates at step 3 if k % 3 == 1, and terminates at the time limit (terminated and
    truncated together: no bootstrap) if k % 3 == 2."""

    def reset(self, *, seed=None, options=None):
        self.episode, self.t = getattr(self, "episode", -1) + 1, 0
        self.steps = getattr(self, "steps", [])  # (observation returned, terminated, cut by the time limit)
        return super().reset(seed=seed, options=options)

    def step(self, action):
        o, _, _, _, info = super().step(action)
        self.t += 1
        kind = self.episode % 3
        terminated = (kind == 1 and self.t == 3) or (kind == 2 and self.t == TIME_LIMIT)
        self.steps.append((o.copy(), terminated, self.t == TIME_LIMIT and not terminated))
        return o, 0.0, terminated, False, info


if "TruncToy-v0" not in gym.registry:
    gym.register(id="TruncToy-v0", entry_point=TruncToy, max_episode_steps=TIME_LIMIT)


def run_one_rollout(script, tmp_path, monkeypatch, extra=()):
    """Execute the script's definitions, wrap its compute_gae and its single-observation normalizer, then run its
    `__main__` block for one iteration; returns (namespace, what compute_gae received, the normalizer's calls)."""
    path = os.path.join(ROOT, script)
    head, main = open(path).read().split('\nif __name__ == "__main__":\n', 1)
    ns = {"__name__": script.removesuffix(".py"), "__file__": path}
    exec(compile(head, path, "exec"), ns)
    seen, normalized = [], []
    compute_gae = ns["compute_gae"]

    def recording_gae(rewards, values, ends, next_value, gamma, gae_lambda):
        net = ns["agent"] if not seen else ns["adversary"]  # two_timescale_adv: the victim's GAE, then its attacker's
        with torch.no_grad():  # the critic as the loop used it, before this iteration's update
            critic = [net.get_value(torch.from_numpy(out)[None, None], seed=seed).item() for _, seed, out in normalized]
        seen.append(dict(rewards=rewards.copy(), ends=ends.copy(), gamma=gamma, critic=critic))
        return compute_gae(rewards, values, ends, next_value, gamma, gae_lambda)

    normalize_np = ns["ObsNormalizer"].normalize_np

    def recording_normalize(self, x, seed=None):
        out = normalize_np(self, x, seed=seed)
        if seed is not None:  # one observation of one seed: the loop's final observations
            normalized.append((x.copy(), seed, out.copy()))
        return out

    ns["compute_gae"] = recording_gae
    ns["ObsNormalizer"].normalize_np = recording_normalize
    argv = [script, "--env-id", "TruncToy-v0", "--num-seeds", "2", "--num-envs", "2", "--num-steps", "40",
            "--total-timesteps", "80", "--num-minibatches", "2", "--update-epochs", "1", "--eval-episodes", "0", *extra]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", argv)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    try:
        exec(compile(textwrap.dedent(main), path, "exec"), ns)
    finally:  # the script's interrupt handler and thread count must not outlive the test
        for s, h in handlers.items():
            signal.signal(s, h)
        torch.set_num_threads(threads)
    return ns, seen, normalized


# (script, flags, GAE calls per iteration: two_timescale_adv's attacker has its own, bootstrapped by its own critic)
SCRIPTS = [("ppo_continuous.py", (), 1), ("sappo.py", ("--epsilon", "0.1"), 1), ("arppo.py", ("--epsilon", "0.1"), 1),
           ("barppo.py", ("--epsilon", "0.1"), 1), ("pruned_ppo.py", ("--epsilon", "0.1"), 1),
           ("two_timescale_adv.py", ("--defense", "none"), 1), ("two_timescale_adv.py", ("--defense", "single"), 2)]


@pytest.mark.parametrize("script,extra,calls", SCRIPTS, ids=[" ".join((s, *e)) for s, e, _ in SCRIPTS])
def test_time_limit_bootstraps_from_the_final_observation(tmp_path, monkeypatch, script, extra, calls):
    ns, seen, normalized = run_one_rollout(script, tmp_path, monkeypatch, extra)
    assert len(seen) == calls, "one iteration: one GAE call per learner"
    for call in seen:
        check_bootstrap(ns, call, normalized)


def check_bootstrap(ns, call, normalized):
    rewards, ends, gamma = call["rewards"], call["ends"], call["gamma"]  # [step, seed, env]
    cut = 0
    for n, envs_n in enumerate(ns["envs"]):
        for i, env in enumerate(envs_n):
            steps = env.unwrapped.steps
            assert len(steps) == rewards.shape[0]
            for t, (o, terminated, truncated) in enumerate(steps):
                assert ends[t, n, i] == float(terminated or truncated), (t, n, i)
                if not truncated:  # terminated or mid-episode: the reward is the env's, 0
                    assert rewards[t, n, i] == 0.0, (t, n, i, terminated)
                    continue
                cut += 1
                # the bootstrap is from the observation the time limit cut at (not the next episode's first one),
                # normalized with this seed's statistics, through this seed's critic
                (k,) = [k for k, (x, _, _) in enumerate(normalized) if np.array_equal(x, o)]
                assert normalized[k][1] == n
                v = call["critic"][k]
                assert v != 0.0
                assert rewards[t, n, i] == pytest.approx(gamma * v, rel=1e-5, abs=1e-6), (t, n, i)
    # 2 seeds x 2 envs x 40 steps in cycles of episodes of 5 (cut), 3 and 5 (terminated) steps: 3 cycles per env
    assert cut == len(normalized) == 4 * 3
    assert sum(terminated for envs_n in ns["envs"] for env in envs_n for _, terminated, _ in env.unwrapped.steps) == 4 * 6
