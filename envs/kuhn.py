"""Kuhn poker: the exact game tree, exact values and gradients, best responses and the partial-control attack.

Kuhn poker (H. W. Kuhn, "A simplified two-person poker", Contributions to the Theory of Games 1, 1950), the
small game of the Kuhn experiment (Fig. 2) in Liu et al., "Rethinking Adversarial Policies: A Generalized Attack
Formulation and Provable Defense in RL", ICLR 2024, arXiv 2305.17342. Everything here is computed on the full
game tree (30 terminal histories), so values, gradients, best responses and the robust optimum are exact.

## Rules

Three cards J, Q, K (0, 1, 2). Each of the two players antes 1 and is dealt one card; the 6 deals are equally
likely. Player 1 passes (checks) or bets 1. After a pass player 2 passes (showdown) or bets; facing a bet a player
passes (folds) or bets (calls). One bet at most: the game ends after two actions, or after three when they were
`pb`. Zero-sum: player 2 gets the negative of player 1's payoff.

| history | play                        | player 1 gets            |
|---------|-----------------------------|--------------------------|
| `pp`    | check, check                | +1 higher card, else -1  |
| `bp`    | bet, fold                   | +1                       |
| `bb`    | bet, call                   | +2 higher card, else -2  |
| `pbp`   | check, bet, fold            | -1                       |
| `pbb`   | check, bet, call            | +2 higher card, else -2  |

The value of the game for player 1 is -1/18 (`GAME_VALUE`); `equilibrium(alpha)` is Kuhn's equilibrium family.

## Players, information states, policies

Players are 1 and 2 (OpenSpiel's 0 and 1). An information state is the acting player's card followed by the
public history, the strings of OpenSpiel's `kuhn_poker` `information_state_string`:

| player | information states, in the order of every policy array |
|--------|----------------------------------------------------------|
| 1      | `0 1 2 0pb 1pb 2pb`                                      |
| 2      | `0p 0b 1p 1b 2p 2b`                                      |

Actions: p (0: pass, check or fold) and b (1: bet or call). A behaviour policy is an array [..., 6] of P(b) at the
player's information states (leading axes batch), or a dict {infostate: P(b)}; `policy_to_json` writes
{"policy": {infostate: P(b)}}. A softmax over the two actions with logits (0, z) is sigmoid(z): `sigmoid`.

## Partial control (arXiv 2305.17342, Sec. 3, eq. 3.2)

The attacked opponent alpha plays `mix(benign, adversarial, eps_pi)` = (1 - eps_pi) * benign + eps_pi *
adversarial at every information state: what a per-step Bernoulli(eps_pi) coin choosing whose action is executed
realizes in expectation (each path visits an information state at most once). For a victim policy,
`worst_case_value` is the victim's value against the adversary's exact best response inside the mixture (the min
oracle of Algorithm 1), `robust_optimum` is the max over victim policies of that worst case (a linear program) and
`gap` = robust optimum - worst case = Expl(victim) - min Expl (Definition 4.1; 0 at the most robust policy).
"""
import json

import numpy as np
from scipy.optimize import linprog
from scipy.special import expit, logit

PASS, BET = 0, 1
PLAYERS = (1, 2)
INFOSTATES = {1: ("0", "1", "2", "0pb", "1pb", "2pb"), 2: ("0p", "0b", "1p", "1b", "2p", "2b")}
GAME_VALUE = -1.0 / 18.0  # player 1's
TERMINAL_HISTORIES = ("pp", "bp", "bb", "pbp", "pbb")
DEALS = tuple((c1, c2) for c1 in range(3) for c2 in range(3) if c1 != c2)


def _payoff_p1(cards, history):
    """Chips player 1 wins at a terminal history: a fold loses the folder's stake, a showdown the lower card's."""
    stake = [1, 1]
    for t, action in enumerate(history):
        stake[t % 2] += action == "b"
    if history.endswith("bp"):
        folder = (len(history) - 1) % 2
        return stake[1] if folder == 1 else -stake[0]
    return stake[1] if cards[0] > cards[1] else -stake[0]


def _build_tree():
    """One row per terminal (deal, history): chance x player 1's payoff, and its <= 3 decisions as (player,
    infostate, action). A decision indexes q = [P(b) of player 1 (6), of player 2 (6), 1.0]; padding uses index 12
    with action b, a factor of exactly 1."""
    weight, index, action, player = [], [], [], []
    for cards in DEALS:
        for history in TERMINAL_HISTORIES:
            weight.append(_payoff_p1(cards, history) / len(DEALS))
            steps = []
            for t, a in enumerate(history):
                p = 1 + t % 2
                i = INFOSTATES[p].index(str(cards[p - 1]) + history[:t])
                steps.append((6 * (p - 1) + i, a == "b", p))
            steps += [(12, True, 0)] * (3 - len(steps))
            index.append([s[0] for s in steps])
            action.append([s[1] for s in steps])
            player.append([s[2] for s in steps])
    return np.array(weight), np.array(index), np.array(action), np.array(player)


_W, _IDX, _ACT, _PLAYER = _build_tree()
_N_TERMINALS, _DEPTH = _IDX.shape
# (terminal, step) -> q index, so a gradient is one matmul over all steps
_INCIDENCE = np.zeros((_N_TERMINALS * _DEPTH, 13))
_INCIDENCE[np.arange(_N_TERMINALS * _DEPTH), _IDX.ravel()] = 1.0
# deeper information states first: backward induction and the LP need the children of a state before the state
_DEEPEST_FIRST = {p: sorted(range(6), key=lambda i, p=p: -len(INFOSTATES[p][i])) for p in PLAYERS}


def _sequences(player):
    """Sequence form of one player: sequence 0 is the empty one and 1 + 2 * i + a is (infostate i, action a).
    Returns the parent sequence of each infostate and the player's last sequence before each terminal."""
    parent, last = np.zeros(6, dtype=int), np.zeros(_N_TERMINALS, dtype=int)
    for z in range(_N_TERMINALS):
        seq = 0
        for g, a, p in zip(_IDX[z], _ACT[z], _PLAYER[z]):
            if p == player:
                parent[g - 6 * (p - 1)] = seq
                seq = 1 + 2 * (g - 6 * (p - 1)) + int(a)
        last[z] = seq
    return parent, last


_SEQ = {p: _sequences(p) for p in PLAYERS}


def _check_player(player):
    if player not in PLAYERS:
        raise ValueError(f"player must be 1 or 2, got {player!r}")
    return player


def _check_eps(eps_pi):
    if not 0.0 <= eps_pi <= 1.0:
        raise ValueError(f"eps_pi must be in [0, 1], got {eps_pi!r}")
    return float(eps_pi)


def as_probs(player, policy):
    """A policy of `player` as a float64 array [..., 6] of P(b) in INFOSTATES order; accepts such an array or a
    dict {infostate: P(b)} with exactly the player's 6 information states. Raises ValueError otherwise."""
    _check_player(player)
    if isinstance(policy, dict):
        if set(policy) != set(INFOSTATES[player]):
            raise ValueError(f"player {player}'s policy needs exactly the infostates {list(INFOSTATES[player])}, "
                             f"got {sorted(policy)}")
        policy = [policy[s] for s in INFOSTATES[player]]
    probs = np.asarray(policy, dtype=np.float64)
    if probs.ndim == 0 or probs.shape[-1] != 6:
        raise ValueError(f"a policy has 6 probabilities (last axis), got shape {probs.shape}")
    if not np.all((probs >= 0.0) & (probs <= 1.0)):
        raise ValueError("policy probabilities must be in [0, 1]")
    return probs


def to_dict(player, policy):
    """{infostate: P(b)} of one (unbatched) policy."""
    probs = as_probs(player, policy)
    if probs.ndim != 1:
        raise ValueError("to_dict takes one policy, not a batch")
    return {s: float(x) for s, x in zip(INFOSTATES[player], probs)}


def sigmoid(logits):
    """P(b) from one logit per information state (softmax over the logits (0, z) of p and b)."""
    return expit(np.asarray(logits, dtype=np.float64))


def logits_of(policy):
    """Inverse of sigmoid (+-inf at deterministic states)."""
    return logit(np.asarray(policy, dtype=np.float64))


def uniform_policy():
    return np.full(6, 0.5)


def pure_policies():
    """All 2^6 = 64 pure policies of a player, [64, 6]; row k bets where bit i of k is set."""
    return ((np.arange(64)[:, None] >> np.arange(6)) & 1).astype(np.float64)


def equilibrium(alpha=0.0):
    """Kuhn's (1950) equilibrium family, alpha in [0, 1/3]: player 1 bets J with alpha and K with 3 alpha, checks Q
    and calls a bet with Q with alpha + 1/3 (always with K, never with J); player 2 bets K, bluffs J after a check
    with 1/3, checks Q, calls with K, with Q 1/3 of the time, never with J. Returns (policy_p1, policy_p2)."""
    if not 0.0 <= alpha <= 1.0 / 3.0:
        raise ValueError(f"alpha must be in [0, 1/3], got {alpha!r}")
    p1 = np.array([alpha, 0.0, 3.0 * alpha, 0.0, alpha + 1.0 / 3.0, 1.0])
    p2 = np.array([1.0 / 3.0, 0.0, 0.0, 1.0 / 3.0, 1.0, 1.0])
    return p1, p2


def mix(benign, adversarial, eps_pi):
    """The attacked opponent's behaviour policy (1 - eps_pi) * benign + eps_pi * adversarial, state-wise (eq. 3.2).
    Plain arrays of P(b) of the same player (dicts: as_probs first)."""
    eps_pi = _check_eps(eps_pi)
    return (1.0 - eps_pi) * np.asarray(benign, dtype=np.float64) + eps_pi * np.asarray(adversarial, dtype=np.float64)


def _stack(policy_p1, policy_p2):
    p1, p2 = np.broadcast_arrays(as_probs(1, policy_p1), as_probs(2, policy_p2))
    return np.concatenate([p1, p2, np.ones(p1.shape[:-1] + (1,))], axis=-1)


def _factors(q):
    """Probability of each step of each terminal history, [..., 30, 3]."""
    qs = q[..., _IDX]
    return np.where(_ACT, qs, 1.0 - qs)


def _scalar(x):
    return float(x) if np.ndim(x) == 0 else x


def expected_payoff(policy_p1, policy_p2):
    """Player 1's exact expected payoff (player 2's is its negative); batches over leading axes."""
    return _scalar((_factors(_stack(policy_p1, policy_p2)).prod(-1) * _W).sum(-1))


def value(player, policy, opponent_policy):
    """`player`'s exact expected payoff playing `policy` against `opponent_policy`."""
    if _check_player(player) == 1:
        return expected_payoff(policy, opponent_policy)
    return -expected_payoff(opponent_policy, policy)


def _payoff_and_grad(q):
    """Player 1's payoff and its gradient w.r.t. q [..., 12]. The payoff is a sum over terminals of products in
    which each information state appears at most once, so d/dq of a term is the product of its other factors."""
    f = _factors(q)
    others = np.stack([f[..., [1, 2]].prod(-1), f[..., [0, 2]].prod(-1), f[..., [0, 1]].prod(-1)], axis=-1)
    terms = _W[:, None] * others * np.where(_ACT, 1.0, -1.0)
    grad = terms.reshape(terms.shape[:-2] + (-1,)) @ _INCIDENCE
    return _scalar((f.prod(-1) * _W).sum(-1)), grad[..., :12]


def value_and_grad(player, policy, opponent_policy):
    """(`player`'s value, its gradient w.r.t. the player's own P(b) [..., 6]) against a fixed opponent policy:
    the direct parametrization of the paper's Sec. 5."""
    _check_player(player)
    pair = (policy, opponent_policy) if player == 1 else (opponent_policy, policy)
    v, grad = _payoff_and_grad(_stack(*pair))
    own = grad[..., :6] if player == 1 else -grad[..., 6:]
    return (v, own) if player == 1 else (-v, own)


def value_and_logit_grad(player, logits, opponent_policy):
    """(`player`'s value, its gradient w.r.t. the player's logits [..., 6]) with P(b) = sigmoid(logits)."""
    probs = sigmoid(logits)
    v, grad = value_and_grad(player, probs, opponent_policy)
    return v, grad * probs * (1.0 - probs)


def attacked_value_and_prob_grads(victim_player, victim_probs, adversary_probs, benign_opponent, eps_pi):
    """The victim's value against mix(benign, adversary_probs, eps_pi), and the gradients of that value (the victim's
    value, which the adversary descends: Algorithm 2, line 3) w.r.t. the victim's and the adversary's P(b) [..., 6]:
    the direct parametrization of Algorithms 1-2, whose steps are projected back onto [0, 1]."""
    victim = _check_player(victim_player)
    eps_pi = _check_eps(eps_pi)
    victim_probs, adversary_probs = as_probs(victim, victim_probs), as_probs(3 - victim, adversary_probs)
    alpha = mix(as_probs(3 - victim, benign_opponent), adversary_probs, eps_pi)
    pair = (victim_probs, alpha) if victim == 1 else (alpha, victim_probs)
    v, grad = _payoff_and_grad(_stack(*pair))
    sign = 1.0 if victim == 1 else -1.0
    g_victim = sign * (grad[..., :6] if victim == 1 else grad[..., 6:])
    g_alpha = sign * (grad[..., 6:] if victim == 1 else grad[..., :6])
    return sign * v, g_victim, eps_pi * g_alpha


def attacked_value_and_grads(victim_player, victim_logits, adversary_logits, benign_opponent, eps_pi):
    """As attacked_value_and_prob_grads, with P(b) = sigmoid(logits): the gradients w.r.t. victim_logits and
    adversary_logits. Returns (value, d value / d victim_logits, d value / d adversary_logits)."""
    victim_probs, adversary_probs = sigmoid(victim_logits), sigmoid(adversary_logits)
    v, g_victim, g_adversary = attacked_value_and_prob_grads(victim_player, victim_probs, adversary_probs, benign_opponent, eps_pi)
    return v, g_victim * victim_probs * (1.0 - victim_probs), g_adversary * adversary_probs * (1.0 - adversary_probs)


def payoff(cards, history):
    """Chips player 1 wins at the terminal `history` with `cards` (c1, c2): for sampling episodes."""
    return _payoff_p1(cards, history)


def _respond(responder, opponent_policy, benign, eps_pi):
    """Backward induction for `responder` playing (1 - eps_pi) * benign + eps_pi * sigma against a fixed opponent:
    the pure sigma that maximizes the responder's payoff, and that payoff. At an information state the responder's
    own earlier steps are a common non-negative factor of all its histories (perfect recall), so the choice there
    compares the two actions' values with the later choices already made. Ties go to p."""
    opponent = as_probs(3 - responder, opponent_policy)
    benign = as_probs(responder, benign)
    if opponent.ndim != 1 or benign.ndim != 1:
        raise ValueError("best responses take one opponent policy, not a batch")
    sign = 1.0 if responder == 1 else -1.0
    sigma = np.zeros(6)
    own = _PLAYER == responder
    rows = np.arange(_N_TERMINALS)
    for i in _DEEPEST_FIRST[responder]:
        played = mix(benign, sigma, eps_pi)
        f = _factors(_stack(*((played, opponent) if responder == 1 else (opponent, played))))
        at = _IDX == 6 * (responder - 1) + i
        through = at.any(1)
        step = at.argmax(1)
        f = np.where(own & (np.arange(_DEPTH) <= step[:, None]), 1.0, f)
        w = sign * _W * f.prod(1)
        bet = _ACT[rows, step]
        sigma[i] = float(w[through & bet].sum() > w[through & ~bet].sum())
    return sigma, value(responder, mix(benign, sigma, eps_pi), opponent)


def best_response(player, opponent_policy):
    """Exact best response of `player` to a fixed opponent policy by backward induction: (pure policy [6] of 0/1,
    the player's value)."""
    return _respond(_check_player(player), opponent_policy, np.zeros(6), 1.0)


def adversary_best_response(victim_player, victim_policy, benign_opponent, eps_pi):
    """The min oracle (Algorithm 1, line 3): the adversarial policy minimizing the victim's value against
    mix(benign_opponent, adversarial, eps_pi), by backward induction. The victim's value is multilinear in the
    adversary's P(b), so a pure policy attains the minimum. Returns (pure adversarial policy [6], victim's value)."""
    victim = _check_player(victim_player)
    sigma, adversary_value = _respond(3 - victim, victim_policy, benign_opponent, _check_eps(eps_pi))
    return sigma, -adversary_value


def worst_case_value(victim_player, victim_policy, benign_opponent, eps_pi):
    """min over adversarial policies of the victim's value against mix(benign_opponent, adversarial, eps_pi):
    -Expl(victim_policy) of Definition 4.1."""
    return adversary_best_response(victim_player, victim_policy, benign_opponent, eps_pi)[1]


def robust_optimum(victim_player, benign_opponent, eps_pi):
    """max over victim policies of worst_case_value, by one linear program (scipy's HiGHS). Returns (value, a
    maximizing victim policy [6]; P(b) = 0 at information states the victim's own policy never reaches).

    The victim is in sequence form (realization plan r, 13 sequences, linear constraints). The adversary enters
    through one variable v_i per information state, the dual of its backward induction: v_i <= S(i, a) for both
    actions, where S(i, a) is the victim's value below (i, a) weighted by chance and r, with each later adversary
    state contributing (1 - eps_pi) * sum_a benign(a) S(j, a) + eps_pi * v_j; maximizing makes v_i = min_a S(i, a).
    (The adversary's own realization plan would not do when it is player 1: at "cpb" the mixture multiplies the
    benign reach (1 - eps_pi) * P_benign(p at c) by the adversary's conditional P(call), which is not linear in the
    adversary's realization plan.)"""
    victim = _check_player(victim_player)
    adversary = 3 - victim
    eps_pi = _check_eps(eps_pi)
    benign = as_probs(adversary, benign_opponent)
    if benign.ndim != 1:
        raise ValueError("robust_optimum takes one benign policy, not a batch")
    victim_parent, victim_last = _SEQ[victim]
    adversary_parent, adversary_last = _SEQ[adversary]
    n_r = 13
    # s[k]: linear form in x = [r (13), v (6)] of the victim's value below adversary sequence k (0: the root)
    s = np.zeros((13, n_r + 6))
    np.add.at(s, (adversary_last, victim_last), _W if victim == 1 else -_W)
    for i in _DEEPEST_FIRST[adversary]:
        k = adversary_parent[i]
        s[k] += (1.0 - eps_pi) * ((1.0 - benign[i]) * s[1 + 2 * i] + benign[i] * s[2 + 2 * i])
        s[k, n_r + i] += eps_pi
    a_ub = np.zeros((12, n_r + 6))
    for i in range(6):
        for a in (PASS, BET):
            a_ub[2 * i + a] = -s[1 + 2 * i + a]
            a_ub[2 * i + a, n_r + i] += 1.0
    a_eq = np.zeros((7, n_r + 6))
    a_eq[0, 0] = 1.0
    for j in range(6):
        a_eq[1 + j, [1 + 2 * j, 2 + 2 * j]] = 1.0
        a_eq[1 + j, victim_parent[j]] -= 1.0
    b_eq = np.zeros(7)
    b_eq[0] = 1.0
    res = linprog(-s[0], A_ub=a_ub, b_ub=np.zeros(12), A_eq=a_eq, b_eq=b_eq,
                  bounds=[(0.0, None)] * n_r + [(None, None)] * 6, method="highs")
    if res.status != 0:
        raise RuntimeError(f"robust_optimum: linprog failed: {res.message}")
    r = res.x[:n_r]
    reach = r[victim_parent]
    bet = r[2 + 2 * np.arange(6)]
    policy = np.clip(np.divide(bet, reach, out=np.zeros(6), where=reach > 1e-12), 0.0, 1.0) + 0.0  # no -0.0
    return float(-res.fun), policy


def gap(victim_player, victim_policy, benign_opponent, eps_pi, optimum=None):
    """robust_optimum - worst_case_value >= 0 (0: most robust). Pass `optimum` (robust_optimum's value) to skip
    solving the LP again."""
    if optimum is None:
        optimum = robust_optimum(victim_player, benign_opponent, eps_pi)[0]
    return optimum - worst_case_value(victim_player, victim_policy, benign_opponent, eps_pi)


def policy_to_json(player, policy):
    """{"policy": {infostate: P(b)}}; a caller may add keys beside "policy"."""
    return {"policy": to_dict(player, policy)}


def policy_from_json(obj):
    """(player, P(b) [6]) from policy_to_json's object or its JSON text; the player follows from the infostates."""
    if isinstance(obj, (str, bytes)):
        obj = json.loads(obj)
    policy = obj.get("policy") if isinstance(obj, dict) else None
    if not isinstance(policy, dict):
        raise ValueError('a Kuhn policy is a JSON object {"policy": {infostate: P(bet or call)}}')
    for player in PLAYERS:
        if set(policy) == set(INFOSTATES[player]):
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in policy.values()):
                raise ValueError("policy probabilities must be numbers")
            return player, as_probs(player, policy)
    raise ValueError(f"policy infostates {sorted(policy)} are neither player 1's {list(INFOSTATES[1])} nor "
                     f"player 2's {list(INFOSTATES[2])}")


def save_policy(path, player, policy):
    with open(path, "w") as f:
        json.dump(policy_to_json(player, policy), f, indent=1)
        f.write("\n")


def load_policy(path):
    """(player, P(b) [6]) from a file written by save_policy."""
    with open(path) as f:
        return policy_from_json(json.load(f))
