"""Critic attack (Pattanaik et al. 2018, as evaluated by Zhang et al. 2020): descend the victim's own value.

    x_hat = argmin_{||x_hat - x||_inf <= eps} V(x_hat),  by `steps` sign-gradient steps of eps/steps from x
"""
import torch


class CriticAttack:
    name = "critic"

    def __init__(self, policy, epsilon, steps=10):
        if policy.critic is None:
            raise ValueError("the critic attack needs a checkpoint with a critic")
        self.policy, self.epsilon, self.steps = policy, epsilon, steps

    def __call__(self, x, gens):
        delta = torch.zeros_like(x)
        step_size = self.epsilon / self.steps
        for _ in range(self.steps):
            with torch.enable_grad():
                x_hat = (x + delta).requires_grad_(True)
                (grad,) = torch.autograd.grad(self.policy.critic(x_hat).sum(), x_hat)
            delta = (delta - step_size * grad.sign()).clamp(-self.epsilon, self.epsilon)
        return x + delta
