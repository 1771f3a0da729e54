"""The certified Lipschitz report of "Pruning Cannot Hurt Robustness" (arXiv 2510.12939, Sec. 3, App. B) for any actor.

    cert = certificate(policy, epsilon)     # policy: attacks.checkpoint.load_checkpoint(...)[0]
    mad = MaxDeviation(MADAttack(policy, epsilon), policy)
    evaluate(policy, env_id, attack=mad); cert["empirical_max_deviation"] = mad.max

The actor's mean is mu(x) = W_L s(W_{L-1} ... s(W_1 x + b_1) ...) + b_L with s = tanh or relu (1-Lipschitz), so
(App. B.1, proof of Theorem 1)

    Lip_2(mu) <= prod_l ||W_l||_2 <= L~ = prod_l min(||W_l||_F, sqrt(||W_l||_1 ||W_l||_inf)),

||W||_1 = max column abs sum, ||W||_inf = max row abs sum (Sec. 3.1 notation). Both terms of the min only shrink
when entries are zeroed, so L~ never increases under elementwise pruning (Theorem 1); the spectral product is
tighter but can increase when an entry is zeroed (e.g. [[1, 1], [1, -1]] has ||.||_2 = 1.414; zero its -1 and it
is 1.618), which is why both are reported. The attacks perturb in an l_inf ball of radius eps in d = obs_dim
normalized coordinates, whose l2 radius is sqrt(d) eps, so for every x_hat in it

    ||mu(x) - mu(x_hat)||_2 <= L~ eps sqrt(d)                      (action_deviation_bound)

The paper proves Theorem 1 on the l2 ball (App. B.1, eq. 1) and states L~ eps also for l_inf (Sec. 3.1 allows
p in {2, inf}; Sec. 4.2 attacks in l_inf) without the sqrt(d) that l_inf needs; we include it. For the Gaussian
policy N(mu(x), diag(sigma^2)) with state-independent sigma, TV(N(m, S), N(m', S)) = 2 Phi(||S^(-1/2)(m - m')||_2 / 2)
- 1 <= ||m - m'||_2 / (sqrt(2 pi) sigma_min), so the certified total variation is tv_constant * action_deviation_bound:

    tv_constant = c = 1 / (sqrt(2 pi) sigma_min),   sigma_min = min_j exp(log_std_j)

App. B (Theorem 1 proof, Lemmas 1 and 3) writes c = 1 / sqrt(2 pi lambda_min(Sigma)), the same number (lambda_min =
sigma_min^2); Sec. 3.1 writes c = (sqrt(2 pi) lambda_min(Sigma))^-1 = 1 / (sqrt(2 pi) sigma_min^2), likely a typo: not
an upper bound on the TV when sigma_min > 1 (the tests check both). The TV is that of the stochastic policy; our
evaluations act with the mean, which action_deviation_bound certifies directly.

Why the parts and not the paper's return bound: Theorems 1-2 bound the value lost to the optimal attacker by
alpha c L~ eps with alpha = 2 [1 + gamma / (1 - gamma)^2] R_max (Sec. 3.1): 19802 R_max at gamma 0.99, about 2e4
R_max. A discounted value gap can never exceed 2 R_max / (1 - gamma) = 200 R_max, so the bound says something only
when c L~ eps sqrt(d) < 200 / 19802 = 0.0101; for the zoo's PPO and SA-PPO agents it is 28 to 1029 (even the TV
bound c L~ eps sqrt(d) is above 1, the largest TV there is). The return bound is vacuous, so we report what it is made
of, each on its own: the Lipschitz surrogate (the quantity Theorem 1 makes monotone) and the tighter spectral
product, sigma_min and c (they move with the learned std, not with pruning), the certified action deviation, the
largest deviation an attack actually found (MAD, via MaxDeviation: how loose the certificate is) and the sparsity.
"""
import math

import torch


def matrix_norms(weight):
    """Norms of one weight matrix [out, in] (float64): the spectral norm and its two monotone upper bounds."""
    w = weight.detach().double()
    if w.dim() != 2:
        raise ValueError(f"expected a weight matrix [out, in], got shape {tuple(w.shape)}")
    fro = torch.linalg.matrix_norm(w, "fro").item()
    l1 = w.abs().sum(0).max().item()  # max column sum: the l1 -> l1 operator norm
    linf = w.abs().sum(1).max().item()  # max row sum: the l_inf -> l_inf operator norm
    return dict(shape=list(w.shape), frobenius=fro, l1=l1, linf=linf, surrogate=min(fro, math.sqrt(l1 * linf)),
                spectral=torch.linalg.matrix_norm(w, 2).item(), sparsity=(w == 0).sum().item() / w.numel())


def certificate(policy, epsilon, obs_dim=None):
    """The certificate of the actor of `policy` at l_inf budget `epsilon` (a JSON-ready dict, see the docstring).
    `empirical_max_deviation` is None here: the caller fills it from a MaxDeviation around an attack. epsilon None (a
    sumo checkpoint: its attacks take actions, not an observation ball): no action_deviation_bound."""
    weights = [layer.weight for layer in policy.actor.layers]
    in_dim = weights[0].shape[-1]
    if obs_dim is not None and obs_dim != in_dim:
        raise ValueError(f"obs_dim {obs_dim} but the actor's first layer takes {in_dim} inputs")
    layers = [matrix_norms(w) for w in weights]
    surrogate = math.prod(layer["surrogate"] for layer in layers)
    sigma_min = policy.actor.log_std.detach().double().exp().min().item()
    zeros = sum(int((w == 0).sum()) for w in weights)
    return dict(
        lipschitz_surrogate=surrogate,
        spectral_product=math.prod(layer["spectral"] for layer in layers),
        sigma_min=sigma_min,
        tv_constant=1.0 / (math.sqrt(2 * math.pi) * sigma_min),
        epsilon=epsilon,
        action_deviation_bound=None if epsilon is None else surrogate * epsilon * math.sqrt(in_dim),
        empirical_max_deviation=None,
        sparsity=zeros / sum(w.numel() for w in weights),
        layers=layers,
    )


class MaxDeviation:
    """Wraps an attack (x_hat = attack(x, gens)) and records the largest ||mu(x) - mu(x_hat)||_2 it produced in
    `max`; the perturbations pass through unchanged, so the evaluation's returns are those of the bare attack."""

    def __init__(self, attack, policy):
        self.attack, self.policy, self.max = attack, policy, 0.0
        self.name = getattr(attack, "name", None)

    def __call__(self, x, gens):
        x_hat = self.attack(x, gens)
        with torch.no_grad():
            dev = torch.linalg.vector_norm(self.policy.actor(x_hat) - self.policy.actor(x), dim=-1)
        self.max = max(self.max, dev.max().item())
        return x_hat
