"""Random attack (Zhang et al. 2020, SA-PPO, Sec. 6): uniform noise in the l_inf ball, fresh at every step.

    x_hat = x + u,  u ~ U[-eps, eps]^d
"""
from attacks import uniform_like


class RandomAttack:
    name = "random"

    def __init__(self, policy, epsilon):
        self.policy, self.epsilon = policy, epsilon

    def __call__(self, x, gens):
        return x + self.epsilon * uniform_like(x, gens)
