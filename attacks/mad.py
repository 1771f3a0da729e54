"""MAD, maximal action difference (Zhang et al. 2020, SA-PPO, arXiv 2003.08938): push the policy's action away.

    x_hat = argmax_{||x_hat - x||_inf <= eps} sum_j ((mu_j(x_hat) - mu_j(x)) / s_j)^2,   s = std / mean(std),
which for the Gaussian policy with state-independent std is KL(pi(.|x) || pi(.|x_hat)) up to a positive factor. Solved as
SA-PPO's code attacks ("action" attack): the objective is flat at x, so start at x + (eps/steps) * sign(N(0, 1)); then
`steps` steps x_hat += (eps/steps) * sign(grad + sqrt(2 (eps/steps) beta) / (k + 2) * N(0, 1)), each projected onto the
ball, with beta = `temperature` (1 in SA-PPO's attack). The training-time SGLD of sappo.py and barppo.py is the same
routine with beta 1e-5 (tests check that both agree at beta 0).
"""
import torch

from attacks import normal_like


def gaussian_kl(mu, mu_hat, log_std):
    """KL(N(mu, std) || N(mu_hat, std)) per row, std shared."""
    return 0.5 * (((mu - mu_hat) * torch.exp(-log_std)) ** 2).sum(-1)


class MADAttack:
    name = "mad"

    def __init__(self, policy, epsilon, steps=10, temperature=1.0):
        self.policy, self.epsilon, self.steps, self.temperature = policy, epsilon, steps, temperature

    def __call__(self, x, gens):
        with torch.no_grad():
            mu = self.policy.actor(x)
        std = self.policy.actor.log_std.detach().exp()
        scale = std / std.mean()  # SA-PPO divides by the std normalized to mean 1 (the noise is scaled against this)
        step_size = self.epsilon / self.steps
        delta = step_size * normal_like(x, gens).sign()
        for k in range(self.steps):
            with torch.enable_grad():
                x_hat = (x + delta).requires_grad_(True)
                (grad,) = torch.autograd.grad((((self.policy.actor(x_hat) - mu) / scale) ** 2).sum(), x_hat)
            noise = normal_like(x, gens) * ((2 * step_size * self.temperature) ** 0.5 / (k + 2)) if self.temperature > 0 else 0.0
            delta = (delta + step_size * (grad + noise).sign()).clamp(-self.epsilon, self.epsilon)
        return x + delta
