"""MAD, maximal action difference (Zhang et al. 2020, SA-PPO, Sec. 6): push the policy's action distribution away.

    x_hat = argmax_{||x_hat - x||_inf <= eps} KL(pi(.|x) || pi(.|x_hat)),
    by SGLD: random start in the ball, `steps` sign-gradient steps of eps/steps plus sqrt(2 step) * temperature * N(0, 1)
For the Gaussian policy with state-independent std the KL is 0.5 * sum(((mu(x) - mu(x_hat)) / std)^2).
"""
import torch

from attacks import normal_like, uniform_like


def gaussian_kl(mu, mu_hat, log_std):
    """KL(N(mu, std) || N(mu_hat, std)) per row, std shared."""
    return 0.5 * (((mu - mu_hat) * torch.exp(-log_std)) ** 2).sum(-1)


class MADAttack:
    name = "mad"

    def __init__(self, policy, epsilon, steps=10, temperature=1e-5):
        self.policy, self.epsilon, self.steps, self.temperature = policy, epsilon, steps, temperature

    def __call__(self, x, gens):
        with torch.no_grad():
            mu = self.policy.actor(x)
        log_std = self.policy.actor.log_std.detach()
        step_size = self.epsilon / self.steps
        # the KL is flat at x_hat = x (zero gradient), hence the random start
        delta = self.epsilon * uniform_like(x, gens)
        for _ in range(self.steps):
            with torch.enable_grad():
                x_hat = (x + delta).requires_grad_(True)
                (grad,) = torch.autograd.grad(gaussian_kl(mu, self.policy.actor(x_hat), log_std).sum(), x_hat)
            delta = delta + step_size * grad.sign()
            if self.temperature > 0:
                delta = delta + (2 * step_size) ** 0.5 * self.temperature * normal_like(x, gens)
            delta = delta.clamp(-self.epsilon, self.epsilon)
        return x + delta
