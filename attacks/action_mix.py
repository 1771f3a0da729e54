"""action_mix: an adversarial policy with partial control (Liu et al., "Rethinking Adversarial Policies", ICLR 2024,
arXiv 2305.17342, Sec. 3; with one agent it is the PR-MDP of Tessler et al. 2019, arXiv 1901.09184). At every step a
Bernoulli(eps_pi) coin decides whose action the env executes:
    a_t = adversary(x_t) with probability eps_pi, else the victim's mu(x_t)
so the deployed policy is (1 - eps_pi) * victim + eps_pi * adversary state by state. The adversary is a PPO policy on
the victim's normalized observation x, paid minus the victim's reward, trained against the frozen victim
(attacks/ppo_adversary.py); its policy loss counts only the steps it acted (its critic learns from all). At attack
time it plays its mean. An action attack: it perturbs no observation; eval_attacks.evaluate calls
`act(x, victim_actions, gens)`, and each coin is drawn from the episode's generator (batched equals one by one).

ArenaActionMixAttack is the same attack in the two-agent sumo arena (envs/sumo.py), the paper's own setting: the
adversary takes over agent 1, whose benign policy otherwise acts, against the frozen victim playing agent 0. It sees
agent 1's observation through the benign policy's normalizer, and eval_attacks.evaluate_arena calls
`act(x1, benign_actions, gens)`. It is paid minus the victim's game result plus agent 1's own dense shaping while
that is annealed (envs.sumo's adversary_reward), as self-play pays agent 1.
"""
import gymnasium as gym
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

NAME = "action_mix"
DEFAULT_STEPS = 1_000_000  # our PR-MDP grid's attacker budget; the paper's RoboSumo attacks train 2e7 steps (App. E.3)


class ActionMixAttack:
    name = NAME
    kind = "action"

    def __init__(self, policy, eps_pi, **ppo):
        """ppo: overrides of attacks.ppo_adversary.PPOConfig (num_envs, num_steps, learning_rate, ...)."""
        self.policy, self.eps_pi = policy, float(eps_pi)
        self.epsilon = self.eps_pi  # the budget, as the cache and the saved file key it
        self.cfg = config_from(ppo)
        self.obs_dim, self.act_dim = policy.actor.layers[0].in_features, policy.actor.layers[-1].out_features
        # adv_norm: its advantages normalized over the steps it acted (ppo_adversary.masked_normalize); fits made
        # before that (normalized over all steps) have other cache keys and are not loaded
        self.settings = dict(eps_pi=self.eps_pi, adv_norm="acted", **config_dict(self.cfg))
        self.agent = self._new_agent(seed=0)
        self.fitted = False
        self.decisions = self.taken = 0  # coins drawn and won by the adversary while attacking

    def _new_agent(self, seed):
        with torch.random.fork_rng():  # initialized from `seed`, without touching the caller's RNG
            torch.manual_seed(seed)
            return GaussianAgent(self.obs_dim, self.act_dim, self.cfg.hidden_sizes, self.cfg.init_std)

    def fit_job(self, env_id, seed=0, steps=None):
        """What a fit trains (train_ppo's pieces; attacks.ppo_adversary.fit_many fits several side by side)."""
        victim = numpy_mlp(self.policy.actor)
        coins = np.random.default_rng([seed, 2])  # a stream of its own: the PPO learner's draws stay as they are

        def victim_action(x, a):
            acted = coins.random(len(x)) < self.eps_pi
            return np.where(acted[:, None], a, victim(x)), acted

        return FitJob(self._new_agent(seed), numpy_normalizer(self.policy.obs_norm), victim_action, seed, NAME)

    def fit(self, env_id, steps=DEFAULT_STEPS, seed=0, progress=False):
        job = self.fit_job(env_id, seed)
        self.agent = job.agent
        self.log = train_ppo(job.agent, env_id, steps, seed, job.normalize, job.victim_action, self.cfg, progress, desc=job.desc)
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


class SumoVersusVictim(gym.Env):
    """The sumo arena as agent 1 sees it, with the frozen victim playing agent 0 deterministically (its mean on its
    own normalized observation): observation = agent 1's raw observation, action = agent 1's, reward = minus
    envs.sumo's adversary_reward (attacks.ppo_adversary.train_ppo pays the adversary minus the reward, so it is paid
    minus the victim's game result plus agent 1's own shaping; the returns a fit logs are the victim's game results
    once the shaping is 0). The game's end is a termination (a rule of the game; time left is observed). The shaping
    coefficient falls from 1 to 0 over the first `shaping_anneal` of `total_steps` steps of this env, as in the
    victim's training (two_timescale_adv.py)."""

    metadata = {"render_modes": []}

    def __init__(self, body, victim, total_steps, shaping_anneal):
        from envs.sumo import parallel_env

        self.sumo = parallel_env(body)
        self.observation_space, self.action_space = self.sumo.observation_space("agent1"), self.sumo.action_space("agent1")
        self.victim_mean, self.victim_normalize = numpy_mlp(victim.actor), numpy_normalizer(victim.obs_norm)
        self.total_steps, self.shaping_anneal, self.steps = total_steps, shaping_anneal, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        obs = self.sumo.reset_array(seed)
        self.victim_obs = obs[0]
        return obs[1], {}

    def step(self, action):
        anneal = self.shaping_anneal * self.total_steps
        self.sumo.set_shaping(max(0.0, 1.0 - self.steps / anneal) if anneal > 0 else 0.0)
        self.steps += 1
        victim = self.victim_mean(self.victim_normalize(self.victim_obs[None]))[0]
        obs, _, done = self.sumo.step_array(np.stack([np.clip(victim, -1.0, 1.0), np.clip(action, -1.0, 1.0)]))
        self.victim_obs = obs[0]
        return obs[1], -self.sumo.adversary_reward(), done, False, {"outcome": self.sumo.outcomes[0]} if done else {}


class ArenaActionMixAttack(ActionMixAttack):
    """action_mix in the sumo arena: with probability eps_pi per step the adversary's action, else the benign
    policy's, is agent 1's; the victim (agent 0) is frozen. `policy` stays the victim (the cache and the saved file are
    keyed by its hash); the benign policy's hash, the arena and the shaping schedule join the settings."""

    def __init__(self, victim, benign, env_id, eps_pi, shaping_anneal=0.5, **ppo):
        super().__init__(victim, eps_pi, **ppo)
        self.benign, self.env_id, self.shaping_anneal = benign, env_id, float(shaping_anneal)
        # reward: agent 1's own shaping (fits paid minus the victim's shaping, which settle for draws, have other keys)
        self.settings.update(env_id=env_id, benign_hash=policy_hash(benign), shaping_anneal=self.shaping_anneal, reward="own_shaping")

    def fit_job(self, env_id, seed=0, steps=DEFAULT_STEPS):
        """What a fit trains (train_ppo's pieces; attacks.ppo_adversary.fit_many fits several side by side): agent 1's
        adversary in the arena with this victim, for `steps` steps (the shaping schedule is a share of them)."""
        from gymnasium.envs.registration import EnvSpec

        benign = numpy_mlp(self.benign.actor)
        coins = np.random.default_rng([seed, 2])  # a stream of its own: the PPO learner's draws stay as they are

        def agent1_action(x, a):  # x: agent 1's observation through the benign normalizer
            acted = coins.random(len(x)) < self.eps_pi
            return np.where(acted[:, None], a, benign(x)), acted

        # train_ppo makes its envs with gym.make(env_id), which also takes an EnvSpec: the arena with this victim in it
        spec = EnvSpec(f"{env_id}-versus-victim", entry_point=SumoVersusVictim, disable_env_checker=True,
                       kwargs=dict(body=env_id.split("-", 1)[1], victim=self.policy, total_steps=steps // self.cfg.num_envs,
                                   shaping_anneal=self.shaping_anneal))
        return FitJob(self._new_agent(seed), numpy_normalizer(self.benign.obs_norm), agent1_action, seed, NAME, env=spec)

    def fit(self, env_id, steps=DEFAULT_STEPS, seed=0, progress=False):
        job = self.fit_job(env_id, seed, steps)
        self.agent = job.agent
        self.log = train_ppo(job.agent, job.env, steps, seed, job.normalize, job.victim_action, self.cfg, progress, desc=job.desc)
        self.fitted = True
        return self
