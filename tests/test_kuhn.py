"""envs/kuhn.py: the game, exact values and gradients, best responses, the partial-control attack and its LP."""
import json
import math

import numpy as np
import pytest
from scipy.optimize import linprog

from envs import kuhn

VALUE = 1.0 / 18.0
PURE = kuhn.pure_policies()


def rand_policy(rng, shape=()):
    return rng.uniform(0.0, 1.0, size=shape + (6,))


def payoff_by_hand(p1, p2):
    """Player 1's payoff written out from the rules table, independently of the module's tree."""
    total = 0.0
    for c1, c2 in kuhn.DEALS:
        s = 1.0 if c1 > c2 else -1.0
        bet, call_after_pb = p1[c1], p1[3 + c1]
        bet_after_p, call = p2[2 * c2], p2[2 * c2 + 1]
        after_pass = (1 - bet_after_p) * s + bet_after_p * ((1 - call_after_pb) * -1.0 + call_after_pb * 2 * s)
        after_bet = (1 - call) * 1.0 + call * 2 * s
        total += (1 - bet) * after_pass + bet * after_bet
    return total / 6.0


def victim_affine(victim, alpha):
    """The victim's value against a fixed opponent behaviour policy alpha is affine in the victim's realization
    plan x: player 2's is its P(b) (one decision per path); player 1's is (P(bet at c), P(pass at c) * P(call at
    cpb)) per card. Returns (constant, coefficients[6]) in that x."""
    c0 = kuhn.value(victim, np.zeros(6), alpha)
    g = np.array([kuhn.value(victim, np.eye(6)[i], alpha) - c0 for i in range(6)])
    return c0, g


def robust_by_enumeration(victim, benign, eps):
    """max over victim realization plans of min over the adversary's 64 pure policies (the minimum over behaviour
    policies is at a pure one: multilinear): an LP independent of the module's dual LP."""
    rows = [victim_affine(victim, kuhn.mix(benign, pure, eps)) for pure in PURE]
    c = np.zeros(7)
    c[6] = -1.0
    a_ub = np.array([np.append(-g, 1.0) for _, g in rows])
    b_ub = np.array([c0 for c0, _ in rows])
    a_ub2, b_ub2 = [], []
    if victim == 1:  # P(pass at c) * P(call) <= P(pass at c)
        for j in range(3):
            row = np.zeros(7)
            row[j], row[3 + j] = 1.0, 1.0
            a_ub2.append(row)
            b_ub2.append(1.0)
    res = linprog(c, A_ub=np.vstack([a_ub] + a_ub2), b_ub=np.concatenate([b_ub, b_ub2]),
                  bounds=[(0.0, 1.0)] * 6 + [(None, None)], method="highs")
    assert res.status == 0
    return -res.fun


def test_tree_and_rules():
    assert len(kuhn.DEALS) == 6 and kuhn._W.shape == (30,)
    assert kuhn.INFOSTATES[1] == ("0", "1", "2", "0pb", "1pb", "2pb")
    assert kuhn.INFOSTATES[2] == ("0p", "0b", "1p", "1b", "2p", "2b")
    # the rules table, deal K vs J (player 1 holds the higher card) and J vs K
    assert [kuhn._payoff_p1((2, 0), h) for h in kuhn.TERMINAL_HISTORIES] == [1, 1, 2, -1, 2]
    assert [kuhn._payoff_p1((0, 2), h) for h in kuhn.TERMINAL_HISTORIES] == [-1, 1, -2, -1, -2]
    ones, zeros = np.ones(6), np.zeros(6)
    bet_fold2 = np.array([1, 0, 1, 0, 1, 0.0])  # player 2 bets after a check, folds to a bet
    assert kuhn.expected_payoff(ones, zeros) == pytest.approx(1.0, abs=1e-15)  # player 1 bets, player 2 folds
    assert kuhn.expected_payoff(ones, ones) == 0.0  # bet, call: showdowns for 2, symmetric deals
    assert kuhn.expected_payoff(zeros, bet_fold2) == pytest.approx(-1.0, abs=1e-15)  # check, bet, fold
    assert kuhn.expected_payoff(zeros, zeros) == 0.0
    rng = np.random.default_rng(0)
    for _ in range(20):
        p1, p2 = rand_policy(rng), rand_policy(rng)
        assert kuhn.expected_payoff(p1, p2) == pytest.approx(payoff_by_hand(p1, p2), abs=1e-14)
        assert kuhn.value(2, p2, p1) == -kuhn.expected_payoff(p1, p2)


def test_batched_payoff_matches_one_at_a_time():
    rng = np.random.default_rng(1)
    p1, p2 = rand_policy(rng, (4, 5)), rand_policy(rng, (5,))
    batch = kuhn.expected_payoff(p1, p2)
    assert batch.shape == (4, 5)
    for i in range(4):
        for j in range(5):
            assert batch[i, j] == pytest.approx(kuhn.expected_payoff(p1[i, j], p2[j]), abs=1e-15)
    v, g = kuhn.value_and_grad(2, p2, p1)
    assert v.shape == (4, 5) and g.shape == (4, 5, 6)


@pytest.mark.parametrize("alpha", [0.0, 1.0 / 6.0, 1.0 / 3.0])
def test_kuhn_equilibrium_family(alpha):
    p1, p2 = kuhn.equilibrium(alpha)
    assert kuhn.expected_payoff(p1, p2) == pytest.approx(kuhn.GAME_VALUE, abs=1e-12)
    assert kuhn.GAME_VALUE == -VALUE
    # neither side can gain by deviating: each best response earns exactly the game value
    assert kuhn.best_response(1, p2)[1] == pytest.approx(-VALUE, abs=1e-12)
    assert kuhn.best_response(2, p1)[1] == pytest.approx(VALUE, abs=1e-12)
    assert kuhn.worst_case_value(1, p1, kuhn.uniform_policy(), 1.0) == pytest.approx(-VALUE, abs=1e-12)
    assert kuhn.worst_case_value(2, p2, kuhn.uniform_policy(), 1.0) == pytest.approx(VALUE, abs=1e-12)


def test_robust_optimum_at_full_control_is_the_game_value():
    rng = np.random.default_rng(2)
    for benign in (kuhn.uniform_policy(), rand_policy(rng), PURE[37]):
        value2, policy2 = kuhn.robust_optimum(2, benign, 1.0)
        value1, policy1 = kuhn.robust_optimum(1, benign, 1.0)
        assert value2 == pytest.approx(VALUE, abs=1e-9)  # issue 13: player 2's game value, 1/18
        assert value1 == pytest.approx(-VALUE, abs=1e-9)
        # player 2's maximin (equilibrium) strategy of Kuhn's solution is the one the LP finds
        np.testing.assert_allclose(policy2, kuhn.equilibrium()[1], atol=1e-9)
        assert kuhn.worst_case_value(1, policy1, benign, 1.0) == pytest.approx(-VALUE, abs=1e-9)


def test_no_attack_at_eps_zero():
    rng = np.random.default_rng(3)
    for victim in kuhn.PLAYERS:
        for _ in range(5):
            policy, benign = rand_policy(rng), rand_policy(rng)
            assert kuhn.worst_case_value(victim, policy, benign, 0.0) == pytest.approx(
                kuhn.value(victim, policy, benign), abs=1e-12)
            best, best_value = kuhn.best_response(victim, benign)
            optimum, robust_policy = kuhn.robust_optimum(victim, benign, 0.0)
            assert optimum == pytest.approx(best_value, abs=1e-9)
            assert kuhn.value(victim, robust_policy, benign) == pytest.approx(best_value, abs=1e-9)


def test_worst_case_and_optimum_non_increasing_in_eps():
    rng = np.random.default_rng(4)
    grid = np.linspace(0.0, 1.0, 11)
    for victim in kuhn.PLAYERS:
        benign = rand_policy(rng)
        optima = [kuhn.robust_optimum(victim, benign, e)[0] for e in grid]
        assert np.all(np.diff(optima) <= 1e-9)
        for _ in range(5):
            policy = rand_policy(rng)
            worst = [kuhn.worst_case_value(victim, policy, benign, e) for e in grid]
            assert np.all(np.diff(worst) <= 1e-12)
            assert all(o - w >= -1e-9 for o, w in zip(optima, worst))  # gap >= 0


@pytest.mark.parametrize("victim", kuhn.PLAYERS)
@pytest.mark.parametrize("eps", [0.25, 0.5, 1.0])
def test_robust_lp_matches_enumeration_and_its_policy(victim, eps):
    rng = np.random.default_rng(5 + victim)
    for benign in (kuhn.uniform_policy(), rand_policy(rng)):
        optimum, policy = kuhn.robust_optimum(victim, benign, eps)
        assert optimum == pytest.approx(robust_by_enumeration(victim, benign, eps), abs=1e-9)
        assert kuhn.worst_case_value(victim, policy, benign, eps) == pytest.approx(optimum, abs=1e-9)
        assert kuhn.gap(victim, policy, benign, eps) == pytest.approx(0.0, abs=1e-9)
        assert kuhn.gap(victim, kuhn.uniform_policy(), benign, eps, optimum=optimum) >= -1e-9


@pytest.mark.parametrize("player", kuhn.PLAYERS)
def test_best_response_is_the_best_of_64_pure_policies(player):
    rng = np.random.default_rng(10 + player)
    for _ in range(20):
        opponent = rand_policy(rng)
        policy, best = kuhn.best_response(player, opponent)
        all_pure = kuhn.value(player, PURE, opponent)  # all 64 at once
        assert best == pytest.approx(all_pure.max(), abs=1e-12)
        assert kuhn.value(player, policy, opponent) == pytest.approx(best, abs=1e-12)
        assert set(policy) <= {0.0, 1.0}
    # also against a deterministic opponent, where many ties make the choice order matter
    assert kuhn.best_response(player, PURE[21])[1] == pytest.approx(kuhn.value(player, PURE, PURE[21]).max(), abs=1e-12)


@pytest.mark.parametrize("victim", kuhn.PLAYERS)
def test_adversary_best_response_inside_the_mixture(victim):
    rng = np.random.default_rng(20 + victim)
    for eps in (0.1, 0.5, 0.9, 1.0):
        policy, benign = rand_policy(rng), rand_policy(rng)
        adversary, worst = kuhn.adversary_best_response(victim, policy, benign, eps)
        all_pure = kuhn.value(victim, policy, kuhn.mix(benign, PURE, eps))
        assert worst == pytest.approx(all_pure.min(), abs=1e-12)
        assert kuhn.value(victim, policy, kuhn.mix(benign, adversary, eps)) == pytest.approx(worst, abs=1e-12)
        # no behaviour (mixed) adversary does better than the pure one
        mixed = kuhn.value(victim, policy, kuhn.mix(benign, rand_policy(rng, (200,)), eps))
        assert mixed.min() >= worst - 1e-12


def test_mixture_is_what_a_per_step_coin_realizes():
    """Each path visits an information state at most once, so a coin at every step is one independent coin per
    information state: averaging over all 2^6 coin outcomes must give the value against the mixture."""
    rng = np.random.default_rng(6)
    eps = 0.3
    victim_policy, benign, adversary = rand_policy(rng), rand_policy(rng), rand_policy(rng)
    for victim in kuhn.PLAYERS:
        expected = 0.0
        for coins in PURE:  # coins[i] = 1: the adversary's action is executed at information state i
            played = np.where(coins == 1, adversary, benign)
            p = math.prod(eps if c else 1.0 - eps for c in coins)
            expected += p * kuhn.value(victim, victim_policy, played)
        assert kuhn.value(victim, victim_policy, kuhn.mix(benign, adversary, eps)) == pytest.approx(expected, abs=1e-14)


def finite_difference(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("player", kuhn.PLAYERS)
def test_exact_gradients_match_finite_differences(player):
    rng = np.random.default_rng(30 + player)
    for _ in range(5):
        logits, opponent = rng.normal(0.0, 1.5, 6), rand_policy(rng)
        v, g = kuhn.value_and_logit_grad(player, logits, opponent)
        assert v == pytest.approx(kuhn.value(player, kuhn.sigmoid(logits), opponent), abs=1e-15)
        fd = finite_difference(lambda z: kuhn.value(player, kuhn.sigmoid(z), opponent), logits)
        np.testing.assert_allclose(g, fd, atol=1e-9)
        probs = rand_policy(rng)
        _, gp = kuhn.value_and_grad(player, probs, opponent)
        # multilinear: the derivative in one probability is the value at 1 minus the value at 0
        for i in range(6):
            hi, lo = probs.copy(), probs.copy()
            hi[i], lo[i] = 1.0, 0.0
            assert gp[i] == pytest.approx(kuhn.value(player, hi, opponent) - kuhn.value(player, lo, opponent),
                                          abs=1e-14)


@pytest.mark.parametrize("victim", kuhn.PLAYERS)
def test_attacked_gradients_match_finite_differences(victim):
    rng = np.random.default_rng(40 + victim)
    eps, benign = 0.4, rand_policy(rng)
    zv, za = rng.normal(0.0, 1.5, 6), rng.normal(0.0, 1.5, 6)

    def attacked(zv, za):
        return kuhn.value(victim, kuhn.sigmoid(zv), kuhn.mix(benign, kuhn.sigmoid(za), eps))

    v, gv, ga = kuhn.attacked_value_and_grads(victim, zv, za, benign, eps)
    assert v == pytest.approx(attacked(zv, za), abs=1e-15)
    np.testing.assert_allclose(gv, finite_difference(lambda z: attacked(z, za), zv), atol=1e-9)
    np.testing.assert_allclose(ga, finite_difference(lambda z: attacked(zv, z), za), atol=1e-9)


def test_policy_json_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    for player in kuhn.PLAYERS:
        policy = rand_policy(rng)
        obj = kuhn.policy_to_json(player, policy)
        assert list(obj) == ["policy"] and list(obj["policy"]) == list(kuhn.INFOSTATES[player])
        back_player, back = kuhn.policy_from_json(json.dumps(obj))
        assert back_player == player and np.array_equal(back, policy)
        path = tmp_path / f"victim{player}.json"
        kuhn.save_policy(path, player, policy)
        assert json.loads(path.read_text()) == obj
        back_player, back = kuhn.load_policy(path)
        assert back_player == player and np.array_equal(back, policy)
        assert np.array_equal(kuhn.as_probs(player, kuhn.to_dict(player, policy)), policy)


@pytest.mark.parametrize("bad", [
    {"policy": {"0": 0.5}},
    {"policy": {s: 0.5 for s in ("0", "1", "2", "0pb", "1pb", "2p")}},
    {"policy": {s: 1.5 for s in kuhn.INFOSTATES[1]}},
    {"policy": {s: "0.5" for s in kuhn.INFOSTATES[2]}},
    {"probs": {}},
    [0.5] * 6,
])
def test_policy_json_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        kuhn.policy_from_json(bad)


def test_bad_arguments():
    with pytest.raises(ValueError):
        kuhn.value(0, np.zeros(6), np.zeros(6))
    with pytest.raises(ValueError):
        kuhn.worst_case_value(2, np.zeros(6), np.zeros(6), 1.5)
    with pytest.raises(ValueError):
        kuhn.expected_payoff(np.zeros(5), np.zeros(6))
    with pytest.raises(ValueError):
        kuhn.expected_payoff(np.full(6, -0.1), np.zeros(6))
    with pytest.raises(ValueError):
        kuhn.equilibrium(0.5)


def test_against_openspiel():
    """Cross-check of values and best responses with OpenSpiel's kuhn_poker (skipped where it is not installed; it is
    not a dependency)."""
    pyspiel = pytest.importorskip("pyspiel")
    from open_spiel.python import policy as policy_lib
    from open_spiel.python.algorithms import best_response, expected_game_score

    game = pyspiel.load_game("kuhn_poker")
    rng = np.random.default_rng(8)

    def tabular(p1, p2):
        tab = policy_lib.TabularPolicy(game)
        for player, probs in ((1, p1), (2, p2)):
            for s, x in zip(kuhn.INFOSTATES[player], probs):
                tab.policy_for_key(s)[:] = [1.0 - x, x]  # OpenSpiel's action 0 is pass, 1 is bet
        return tab

    for _ in range(5):
        p1, p2 = rand_policy(rng), rand_policy(rng)
        tab = tabular(p1, p2)
        values = expected_game_score.policy_value(game.new_initial_state(), [tab, tab])
        assert values[0] == pytest.approx(kuhn.expected_payoff(p1, p2), abs=1e-12)
        for player in kuhn.PLAYERS:
            br = best_response.BestResponsePolicy(game, player - 1, tab)
            opponent = p2 if player == 1 else p1
            assert br.value(game.new_initial_state()) == pytest.approx(kuhn.best_response(player, opponent)[1],
                                                                        abs=1e-12)
    tab = tabular(*kuhn.equilibrium(1.0 / 6.0))
    assert expected_game_score.policy_value(game.new_initial_state(), [tab, tab])[0] == pytest.approx(-VALUE, abs=1e-12)
