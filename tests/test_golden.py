"""Golden replay: the first evaluation episodes of two zoo checkpoints, natural and under the `random` and `critic`
attacks at the env's default eps, must return exactly (bit for bit) the per-episode returns stored in
tests/data/golden_eval.json for this kind of CPU. It catches MuJoCo / gymnasium / torch drift (a number is
reproducible only with its versions, which the file records) and regressions of the evaluation protocol (seeding,
normalizer, batching, attack arithmetic). The two attacks exercise what an attack adds to an episode: `random` draws
noise from the per-episode generators, `critic` takes gradient steps through the victim's critic.

Bit for bit holds on one kind of CPU only: another instruction set rounds some operations differently and a MuJoCo
trajectory then parts from the stored one within an episode (the HalfCheetah agent's returns moved by up to 4,000
between an AMD EPYC and an Intel Xeon VM, the same versions). So the file keeps one set of returns per CPU (its model
name and torch's kernel level, `torch.backends.cpu.get_cpu_capability()`), and on a CPU it does not know the replay
is skipped with a message saying how to add it. After a deliberate change (new pinned versions, a protocol change),
regenerate the data on each kind of machine and commit it with the change:

    .venv/bin/python tests/test_golden.py --write      # this machine's entry (the others are kept)
"""
import json
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from attacks.checkpoint import default_epsilon, load_checkpoint, policy_hash  # noqa: E402
from attacks.critic import CriticAttack  # noqa: E402
from attacks.random import RandomAttack  # noqa: E402
from eval_attacks import cpu_model, evaluate  # noqa: E402

DATA = os.path.join(ROOT, "tests", "data", "golden_eval.json")
MODELS = ["zoo/ppo_continuous__Hopper-v4.safetensors", "zoo/ppo_continuous__HalfCheetah-v4.safetensors"]
ATTACKS = {"natural": None, "random": RandomAttack, "critic": CriticAttack}
EPISODES, SEED = 3, 0


def versions():
    import gymnasium
    import mujoco
    import numpy

    return dict(torch=torch.__version__, gymnasium=gymnasium.__version__, mujoco=mujoco.__version__,
                numpy=numpy.__version__)


def replay(model, name):
    """Per-episode returns (python floats) of `model` under attack `name` at its env's default eps."""
    policy, meta = load_checkpoint(os.path.join(ROOT, model))
    eps = default_epsilon(meta["env_id"])
    attack = ATTACKS[name](policy, eps) if ATTACKS[name] else None
    return [float(r) for r in evaluate(policy, meta["env_id"], episodes=EPISODES, seed=SEED, attack=attack)]


def this_cpu():
    return cpu_model(), torch.backends.cpu.get_cpu_capability()


def matches(entry, cpu):
    """An entry is this machine's if its CPU name starts the machine's (an entry may name a family) at the same
    kernel level."""
    return cpu[0].startswith(entry["cpu"]) and cpu[1] == entry["capability"]


def write():
    torch.set_num_threads(1)  # as the tests run (conftest.py)
    cases = {}
    for model in MODELS:
        policy, meta = load_checkpoint(os.path.join(ROOT, model))
        cases[model] = dict(env_id=meta["env_id"], epsilon=default_epsilon(meta["env_id"]),
                            victim_hash=policy_hash(policy), returns={name: replay(model, name) for name in ATTACKS})
    cpu = this_cpu()
    data = dict(about="tests/test_golden.py: bit-for-bit replays per kind of CPU; add or renew this machine's with "
                      "`.venv/bin/python tests/test_golden.py --write`", episodes=EPISODES, seed=SEED, platforms=[])
    if os.path.exists(DATA):
        with open(DATA) as f:
            data = json.load(f)
    data["platforms"] = [e for e in data["platforms"] if not matches(e, cpu)]
    data["platforms"].append(dict(cpu=cpu[0], capability=cpu[1], versions=versions(), cases=cases))
    os.makedirs(os.path.dirname(DATA), exist_ok=True)
    with open(DATA, "w") as f:
        json.dump(data, f, indent=1)  # json writes floats by repr: they read back bit for bit
        f.write("\n")
    print(f"wrote {DATA}: {cpu[0]} ({cpu[1]}), {', '.join(f'{k} {v}' for k, v in versions().items())}")


@pytest.fixture(scope="module")
def stored():
    with open(DATA) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def golden(stored):
    """This machine's entry; skipped, saying how to add one, on a CPU the file does not know."""
    cpu = this_cpu()
    entries = [e for e in stored["platforms"] if matches(e, cpu)]
    if not entries:
        pytest.skip(f"no golden replay for this CPU ({cpu[0]}, {cpu[1]}): `.venv/bin/python tests/test_golden.py --write` adds one")
    return {**stored, **entries[0]}


def drift_note(stored):
    installed = versions()
    pairs = ", ".join(f"{k} {stored.get(k)} (installed {installed[k]})" for k in installed)
    if any(stored.get(k) != installed[k] for k in installed):
        why = "the versions differ: library drift is the likely cause"
    else:
        why = "the versions are the same: an evaluation regression (or another platform's floating point)"
    return f"stored with {pairs}; {why}. If the change is intended: .venv/bin/python tests/test_golden.py --write"


@pytest.mark.parametrize("model", MODELS)
def test_checkpoint_is_the_stored_one(stored, model):
    policy, meta = load_checkpoint(os.path.join(ROOT, model))
    for entry in stored["platforms"]:  # on every CPU's entry
        case = entry["cases"][model]
        assert (meta["env_id"], default_epsilon(meta["env_id"])) == (case["env_id"], case["epsilon"])
        assert policy_hash(policy) == case["victim_hash"], f"{model} changed since the golden data was written"


def test_the_golden_file_has_one_entry_per_known_cpu(stored):
    """Every entry names a CPU and a kernel level, no two entries match one machine, and the two known VMs are in it."""
    assert all(e["cpu"] and e["capability"] for e in stored["platforms"])
    known = [(e["cpu"], e["capability"]) for e in stored["platforms"]]
    assert ("AMD EPYC", "AVX2") in known and ("Intel(R) Xeon(R) Processor", "AVX512") in known
    assert sum(matches(e, this_cpu()) for e in stored["platforms"]) <= 1


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("model", MODELS)
def test_replay_is_bit_for_bit(golden, model, name):
    assert (golden["episodes"], golden["seed"]) == (EPISODES, SEED)
    stored = golden["cases"][model]["returns"][name]
    got = replay(model, name)
    assert got == stored, f"{model} {name}: returns {got} != stored {stored}; {drift_note(golden['versions'])}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_golden.py --write   (regenerates tests/data/golden_eval.json)")
    write()
