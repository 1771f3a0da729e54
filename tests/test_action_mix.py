"""attacks/action_mix.py: the coin's frequency, eps_pi = 0 is the natural return, the victim stays unchanged, batched
equals one by one, and the adversary's policy learns only from the steps it acted."""
import os

import numpy as np
import pytest
import torch
from conftest import one_line_error, run

from attacks.action_mix import ActionMixAttack
from attacks.checkpoint import load_checkpoint, policy_hash
from eval_attacks import evaluate

TINY = dict(num_steps=256, num_minibatches=4, update_epochs=2)


@pytest.fixture(scope="module")
def victim(root):
    return load_checkpoint(os.path.join(root, "zoo", "ppo_continuous__Hopper-v4.safetensors"))[0]


@pytest.fixture(scope="module")
def fitted(victim):
    before = policy_hash(victim)
    attack = ActionMixAttack(victim, 0.3, **TINY).fit("Hopper-v4", steps=1024, seed=0)
    assert policy_hash(victim) == before  # fitting never touches the victim
    return attack


@pytest.mark.parametrize("eps_pi", [0.0, 0.3, 1.0])
def test_the_coin_takes_over_with_probability_eps_pi(victim, eps_pi):
    attack = ActionMixAttack(victim, eps_pi, **TINY)
    attack.fitted = True  # an untrained adversary: its actions differ from the victim's
    gens = [torch.Generator().manual_seed(i) for i in range(200)]
    x = torch.randn(200, 11)
    mine = victim.actor(x).detach().numpy()
    differ = []
    for _ in range(100):
        executed = attack.act(x, mine, gens)
        differ.append(np.any(executed != mine, axis=1))
    share = np.mean(differ)
    assert attack.decisions == 20_000 and attack.taken == pytest.approx(share * 20_000)
    assert share == pytest.approx(eps_pi, abs=0.015)  # 4.7 binomial standard deviations at eps_pi 0.3


def test_eps_pi_zero_is_the_natural_return_and_the_victim_is_unchanged(victim, fitted):
    before = policy_hash(victim)
    natural = evaluate(victim, "Hopper-v4", episodes=3, seed=0)
    zero = ActionMixAttack(victim, 0.0, **TINY)
    zero.agent.load_state_dict(fitted.agent.state_dict())
    zero.fitted = True
    assert np.array_equal(evaluate(victim, "Hopper-v4", episodes=3, seed=0, attack=zero), natural)
    assert not np.array_equal(evaluate(victim, "Hopper-v4", episodes=3, seed=0, attack=fitted), natural)
    assert policy_hash(victim) == before


def test_batched_equals_one_by_one(victim, fitted):
    a = evaluate(victim, "Hopper-v4", episodes=4, seed=3, attack=fitted, num_envs=1)
    b = evaluate(victim, "Hopper-v4", episodes=4, seed=3, attack=fitted, num_envs=4)
    assert np.array_equal(a, b)


def test_policy_learns_only_from_the_steps_it_acted(victim):
    """At eps_pi = 0 the adversary never acts: its actor gets no gradient at all (the weights stay bit for bit), while
    its critic learns the victim's values."""
    attack = ActionMixAttack(victim, 0.0, **TINY)
    attack.agent = attack._new_agent(seed=5)
    actor0 = {k: v.clone() for k, v in attack.agent.actor.state_dict().items()}
    critic0 = {k: v.clone() for k, v in attack.agent.critic.state_dict().items()}
    attack._new_agent = lambda seed: attack.agent  # keep this agent through fit()
    attack.fit("Hopper-v4", steps=512, seed=5)
    assert all(torch.equal(v, actor0[k]) for k, v in attack.agent.actor.state_dict().items())
    assert any(not torch.equal(v, critic0[k]) for k, v in attack.agent.critic.state_dict().items())


def test_save_load_round_trip(victim, fitted, tmp_path):
    path = str(tmp_path / "a.safetensors")
    fitted.save(path)
    other = ActionMixAttack(victim, 0.3, **TINY).load(path)
    assert all(torch.equal(a, b) for a, b in zip(other.agent.state_dict().values(), fitted.agent.state_dict().values()))
    with pytest.raises(Exception):
        ActionMixAttack(victim, 0.5, **TINY).load(path)  # another budget is another attack


def test_cli_bad_eps_pi(tmp_path, root):
    model = os.path.join(root, "zoo", "ppo_continuous__Hopper-v4.safetensors")
    assert "--eps-pi" in one_line_error(run("eval_attacks.py", "--model", model, "--attacks", "action_mix", "--eps-pi", 1.5, cwd=tmp_path, timeout=60))
