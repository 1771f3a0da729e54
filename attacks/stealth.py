"""Stealthiness of an adversarial policy: how far the victim's observation distribution moves under attack.

Liu et al., "Rethinking Adversarial Policies", ICLR 2024 (arXiv 2305.17342), Sec. 7 (Q1), Fig. 1 and 3, App. E.2:
the features are ranked by variance-based importance (the victim's observations against the benign opponent; features
with small variance are deemed unimportant) and the shift is the squared Wasserstein-2 distance between the
observation distributions without and with the attack, on the most important features.

The paper leaves open whether W2 is taken on the joint distribution of those features or on each one. We take it on
each feature's 1-D marginal and sum over the top k (the per-feature values are kept too). In 1-D, W2 is the L2
distance of the quantile functions, W_p^p(u, v) = int_0^1 |F_u^-1(q) - F_v^-1(q)|^p dq, exact for two empirical
samples of any sizes; POT (Python Optimal Transport, `ot.wasserstein_1d`) computes it. The joint W2 of two samples of
one 10-d distribution shrinks only like n^(-1/5), so with a few thousand correlated observations it would be mostly
estimation noise (POT's exact `ot.emd2` between two samples of 3000 from one 10-d standard Gaussian gives W2^2 = 3.34,
and 3.45 when one is shifted by a true W2^2 of 0.1).
Fig. 1 of the paper shows the same marginals. The marginals ignore correlations between features, so the sum is a
lower bound of the joint W2^2 on those features: every coupling of the joint distributions projects to a coupling of
each marginal, and the squared distance is a sum over the features.

`floor`: the same measure between two halves of the natural observations (even and odd episodes): what sampling noise
alone gives, so a shift is only meaningful above it.
"""
import numpy as np
import ot


def wasserstein_1d(u, v, p=2):
    """W_p^p between the empirical distributions of the 1-D samples u and v (any sizes), by POT: p=2 gives the squared
    W2 of the paper, p=1 scipy.stats.wasserstein_distance (tests/test_sumo_training.py checks both)."""
    u, v = np.asarray(u, dtype=np.float64).ravel(), np.asarray(v, dtype=np.float64).ravel()
    if u.size == 0 or v.size == 0:
        raise ValueError("wasserstein_1d needs two non-empty samples")
    return float(ot.wasserstein_1d(u, v, p=p))


def feature_importance(observations):
    """Variance of each feature over the observations [samples, features] and the features sorted by it, largest
    first (App. E.2's variance-based importance)."""
    variance = np.var(np.asarray(observations, dtype=np.float64), axis=0)
    return variance, np.argsort(-variance, kind="stable")


def stealth(natural, attacked, k=10, natural_halves=None, exclude=()):
    """The observation shift of an attack: natural and attacked are the victim's raw observations [samples, features]
    (all steps of all episodes) against the benign opponent and under the attack. The k most important features are
    ranked on `natural`, leaving out the `exclude` ones; w2_squared is the sum of their marginal W2^2,
    w2_squared_per_feature each one's. natural_halves=(a, b): two disjoint halves of the natural observations (e.g.
    even and odd episodes), whose distance on the same features is the sampling-noise floor."""
    natural, attacked = np.asarray(natural, dtype=np.float64), np.asarray(attacked, dtype=np.float64)
    variance, order = feature_importance(natural)
    features = [int(i) for i in order if int(i) not in set(exclude)][:k]
    per_feature = [wasserstein_1d(natural[:, i], attacked[:, i]) for i in features]
    out = dict(measure="sum over the top-k features (variance on the natural observations) of the squared W2 of the 1-D marginals",
               k=len(features), features=features, excluded=sorted(int(i) for i in exclude), importance=[float(variance[i]) for i in features],
               w2_squared=float(np.sum(per_feature)), w2_squared_per_feature=per_feature,
               natural_samples=int(natural.shape[0]), attacked_samples=int(attacked.shape[0]))
    if natural_halves is not None:
        a, b = (np.asarray(h, dtype=np.float64) for h in natural_halves)
        out["floor"] = float(sum(wasserstein_1d(a[:, i], b[:, i]) for i in features))
    return out
