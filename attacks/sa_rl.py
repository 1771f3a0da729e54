"""SA-RL, the "optimal attack": a PPO adversary learns the perturbation policy (Zhang et al. 2021, "Robust
Reinforcement Learning on State Observations with Learned Optimal Adversary", ICLR; the attack behind ATLA).

The victim pi is fixed, so the attacker faces an ordinary MDP: observe x = norm(s), act a in R^obs_dim, the victim
acts mu(x_hat) on x_hat = x + eps * tanh(a), and the adversary is paid minus the victim's reward:
    nu* = argmax_nu E[ sum_t gamma^t (-r(s_t, mu(x_t + eps * tanh(nu(x_t))))) ]
PPO with the papers' settings (2048 steps per iteration, 10 epochs x 32 minibatches, gamma 0.99, GAE 0.95, clip
0.2, Adam 3e-4 annealed), 1M steps by default. Squash: tanh (smooth, keeps PPO's Gaussian on the unsquashed a);
at attack time the adversary plays its mean, so the attack is deterministic.
"""
import numpy as np
import torch

from attacks.checkpoint import policy_hash
from attacks.ppo_adversary import (
    FitJob,
    GaussianAgent,
    config_dict,
    config_from,
    forward_invariant,
    load_network,
    numpy_mlp,
    numpy_normalizer,
    save_attack,
    train_ppo,
)

NAME = "sa_rl"
DEFAULT_STEPS = 1_000_000  # the paper's adversary budget


class SARLAttack:
    name = NAME

    def __init__(self, policy, epsilon, **ppo):
        """ppo: overrides of attacks.ppo_adversary.PPOConfig (num_envs, num_steps, learning_rate, ...)."""
        self.policy, self.epsilon = policy, float(epsilon)
        self.cfg = config_from(ppo)
        self.obs_dim = policy.actor.layers[0].in_features
        self.settings = dict(epsilon=self.epsilon, squash="tanh", **config_dict(self.cfg))
        self.agent = self._new_agent(seed=0)
        self.fitted = False

    def _new_agent(self, seed):
        with torch.random.fork_rng():  # initialized from `seed`, without touching the caller's RNG
            torch.manual_seed(seed)
            return GaussianAgent(self.obs_dim, self.obs_dim, self.cfg.hidden_sizes, self.cfg.init_std)

    def fit_job(self, env_id, seed=0, steps=None):
        """What a fit trains (train_ppo's pieces; attacks.ppo_adversary.fit_many fits several side by side)."""
        victim = numpy_mlp(self.policy.actor)
        eps = self.epsilon

        def victim_action(x, a):
            return victim(x + eps * np.tanh(a))

        return FitJob(self._new_agent(seed), numpy_normalizer(self.policy.obs_norm), victim_action, seed, NAME)

    def fit(self, env_id, steps=DEFAULT_STEPS, seed=0, progress=False):
        job = self.fit_job(env_id, seed)
        self.agent = job.agent
        self.log = train_ppo(job.agent, env_id, steps, seed, job.normalize, job.victim_action, self.cfg, progress, desc=job.desc)
        self.fitted = True
        return self

    def __call__(self, x, gens=None):
        if not self.fitted:
            raise RuntimeError(f"{self.name}: fit() or load() the adversary before attacking")
        with torch.no_grad():
            return x + self.epsilon * torch.tanh(forward_invariant(self.agent.actor, x))

    def save(self, path):
        meta = dict(settings=self.settings, epsilon=self.epsilon, victim_hash=policy_hash(self.policy))
        save_attack(path, self.name, self.agent.state_dict(), meta)

    def load(self, path):
        load_network(path, self.name, self.policy, self.epsilon, self.agent, "adversary network")
        self.fitted = True
        return self

