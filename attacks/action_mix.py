"""action_mix: an adversarial policy with partial control (Liu et al., "Rethinking Adversarial Policies", ICLR 2024,
arXiv 2305.17342, Sec. 3; with one agent it is the PR-MDP of Tessler et al. 2019, arXiv 1901.09184). At every step a
Bernoulli(eps_pi) coin decides whose action the env executes:
    a_t = adversary(x_t) with probability eps_pi, else the victim's mu(x_t)
so the deployed policy is (1 - eps_pi) * victim + eps_pi * adversary state by state. The adversary is a PPO policy on
the victim's normalized observation x, paid minus the victim's reward, trained against the frozen victim
(attacks/ppo_adversary.py); its policy loss counts only the steps it acted (its critic learns from all). At attack
time it plays its mean. An action attack: it perturbs no observation; eval_attacks.evaluate calls
`act(x, victim_actions, gens)`, and each coin is drawn from the episode's generator (batched equals one by one).
"""
import numpy as np
import torch

from attacks.checkpoint import policy_hash
from attacks.ppo_adversary import (
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

NAME = "action_mix"
DEFAULT_STEPS = 1_000_000  # issue 13's attacker budget; the paper's RoboSumo attacks train 2e7 steps (App. E.3)


class ActionMixAttack:
    name = NAME
    kind = "action"

    def __init__(self, policy, eps_pi, **ppo):
        """ppo: overrides of attacks.ppo_adversary.PPOConfig (num_envs, num_steps, learning_rate, ...)."""
        self.policy, self.eps_pi = policy, float(eps_pi)
        self.epsilon = self.eps_pi  # the budget, as the cache and the saved file key it
        self.cfg = config_from(ppo)
        self.obs_dim, self.act_dim = policy.actor.layers[0].in_features, policy.actor.layers[-1].out_features
        self.settings = dict(eps_pi=self.eps_pi, **config_dict(self.cfg))
        self.agent = self._new_agent(seed=0)
        self.fitted = False
        self.decisions = self.taken = 0  # coins drawn and won by the adversary while attacking

    def _new_agent(self, seed):
        with torch.random.fork_rng():  # initialized from `seed`, without touching the caller's RNG
            torch.manual_seed(seed)
            return GaussianAgent(self.obs_dim, self.act_dim, self.cfg.hidden_sizes, self.cfg.init_std)

    def fit(self, env_id, steps=DEFAULT_STEPS, seed=0, progress=False):
        self.agent = self._new_agent(seed)
        victim = numpy_mlp(self.policy.actor)
        coins = np.random.default_rng([seed, 2])  # a stream of its own: the PPO learner's draws stay as they are

        def victim_action(x, a):
            acted = coins.random(len(x)) < self.eps_pi
            return np.where(acted[:, None], a, victim(x)), acted

        self.log = train_ppo(self.agent, env_id, steps, seed, numpy_normalizer(self.policy.obs_norm), victim_action, self.cfg, progress, desc=NAME)
        self.fitted = True
        return self

    def act(self, x, victim_actions, gens):
        """The executed actions [B, act_dim] (numpy) for normalized observations x [B, obs_dim] and the victim's own."""
        if not self.fitted:
            raise RuntimeError(f"{self.name}: fit() or load() the adversary before attacking")
        taken = np.array([torch.rand((), generator=g).item() < self.eps_pi for g in gens])
        self.decisions, self.taken = self.decisions + len(gens), self.taken + int(taken.sum())
        if not taken.any():
            return victim_actions
        with torch.no_grad():
            adversary = forward_invariant(self.agent.actor, x).numpy()
        return np.where(taken[:, None], adversary, victim_actions)

    def save(self, path):
        meta = dict(settings=self.settings, epsilon=self.epsilon, victim_hash=policy_hash(self.policy))
        save_attack(path, self.name, self.agent.state_dict(), meta)

    def load(self, path):
        load_network(path, self.name, self.policy, self.epsilon, self.agent, "adversary network")
        self.fitted = True
        return self
