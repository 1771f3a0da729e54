"""The fast attacks and eval_attacks.py: eps-ball bounds on every step, attack strength, batched == one by one."""
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import git_head, one_line_error, run

import eval_attacks
import ppo_continuous as P
from attacks.checkpoint import load_checkpoint, policy_hash
from attacks.critic import CriticAttack
from attacks.mad import MADAttack, gaussian_kl
from attacks.random import RandomAttack
from eval_attacks import evaluate

FAST = {"random": RandomAttack, "critic": CriticAttack, "mad": MADAttack}


@pytest.fixture(scope="module")
def victim(tmp_path_factory):
    """A random (untrained) Hopper-v4 victim with a non-trivial normalizer, saved and loaded as any checkpoint."""
    torch.manual_seed(0)
    args = P.resolve_args(P.Args(env_id="Hopper-v4"))
    agent = P.Agent(11, 3, args, [torch.Generator().manual_seed(0)])
    agent.obs_norm.update(np.random.default_rng(0).normal(0.0, 0.5, size=(1, 1000, 11)))
    with torch.no_grad():
        for layer in agent.actor.layers:
            layer.weight.mul_(1.0 / layer.weight.std().item() / 8)  # a non-degenerate mean head
    path = str(tmp_path_factory.mktemp("victim") / "victim.safetensors")
    P.save_checkpoint(path, agent, 0, args, global_step=0)
    return path, load_checkpoint(path)[0]


class Recorder:
    """Wraps an attack and records the largest |x_hat - x| it ever produced."""

    def __init__(self, attack):
        self.attack, self.max_dist, self.calls = attack, 0.0, 0

    def __call__(self, x, gens):
        x_hat = self.attack(x, gens)
        self.max_dist = max(self.max_dist, (x_hat - x).abs().max().item())
        self.calls += 1
        return x_hat


@pytest.mark.parametrize("name", list(FAST))
def test_every_perturbation_inside_eps_ball(victim, name):
    _, policy = victim
    eps = 0.075
    rec = Recorder(FAST[name](policy, eps))
    evaluate(policy, "Hopper-v4", episodes=3, seed=0, attack=rec)
    assert rec.calls > 10
    assert rec.max_dist <= eps + 1e-6
    assert rec.max_dist > 0.5 * eps  # the attack actually uses its budget


def test_mad_beats_random_on_kl_and_critic_lowers_value(victim, root):
    """On a trained policy (the zoo's PPO Hopper agent, states from its own episode): MAD's KL is well above random
    noise's; SA-PPO's beta = 1 noise inside the sign is scaled against a real policy's gradients, which an untrained
    net's near-zero ones would drown in. The critic attack lowers the value below clean and random states."""
    import gymnasium as gym

    policy, _ = load_checkpoint(os.path.join(root, "zoo", "ppo_continuous__Hopper-v4.safetensors"))
    env = gym.make("Hopper-v4")
    o, _ = env.reset(seed=0)
    xs = []
    for _ in range(200):
        xs.append(torch.from_numpy(policy.normalize(o[None])))
        o, _, terminated, truncated, _ = env.step(policy.actor(xs[-1])[0].numpy())
        if terminated or truncated:
            o, _ = env.reset()
    x = torch.cat(xs)
    gens = [torch.Generator().manual_seed(i) for i in range(len(x))]
    eps = 0.075
    with torch.no_grad():
        mu = policy.actor(x)
        kl_mad = gaussian_kl(mu, policy.actor(MADAttack(policy, eps)(x, gens)), policy.actor.log_std).mean()
        kl_rand = gaussian_kl(mu, policy.actor(RandomAttack(policy, eps)(x, gens)), policy.actor.log_std).mean()
        v_clean = policy.critic(x).mean()
        v_critic = policy.critic(CriticAttack(policy, eps)(x, gens)).mean()
        v_rand = policy.critic(RandomAttack(policy, eps)(x, gens)).mean()
    assert kl_mad > 2 * kl_rand > 0
    assert v_critic < v_clean and v_critic < v_rand


@pytest.mark.parametrize("name", ["random", "mad", "critic"])
def test_batched_equals_one_by_one(victim, name):
    _, policy = victim
    attack = FAST[name](policy, 0.075)
    batched = evaluate(policy, "Hopper-v4", episodes=5, seed=7, num_envs=5, attack=attack)
    sequential = evaluate(policy, "Hopper-v4", episodes=5, seed=7, num_envs=1, attack=attack)
    np.testing.assert_array_equal(batched, sequential)  # bit-for-bit: the loaded policy is batch-invariant
    assert len(set(np.round(batched, 6))) > 1  # the episodes differ (seeds are used)


def test_eps_zero_is_natural_and_victim_untouched(victim):
    _, policy = victim
    before = policy_hash(policy)
    natural = evaluate(policy, "Hopper-v4", episodes=3, seed=1)
    for cls in FAST.values():
        np.testing.assert_array_equal(evaluate(policy, "Hopper-v4", episodes=3, seed=1, attack=cls(policy, 0.0)), natural)
        evaluate(policy, "Hopper-v4", episodes=2, seed=1, attack=cls(policy, 0.1))
    assert policy_hash(policy) == before


def test_cli_table_json_and_sweep(victim, tmp_path):
    path, _ = victim
    out = tmp_path / "out.json"
    proc = run("eval_attacks.py", "--model", path, "--attacks", "random", "critic", "mad", "--episodes", 3, "--json", out, "--markdown", tmp_path / "t.md")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["schema"] == "robust-rl/eval/1" and res["git_commit"].removesuffix("-dirty") == git_head()  # the commit it started from
    assert res["machine"].endswith(", " + eval_attacks.cpu_model())  # which CPU, not only the host
    (r,) = res["results"]
    assert r["epsilon"] == 0.075 and set(r["attacks"]) == {"random", "critic", "mad"}
    worst = min(a["mean"] for a in r["attacks"].values())
    assert r["worst"]["mean"] == worst
    assert r["robustness"] == pytest.approx((worst - r["natural"]["mean"]) / abs(r["natural"]["mean"]))
    assert "| victim.safetensors | Hopper-v4 | 0.075 |" in proc.stdout
    assert (tmp_path / "t.md").read_text().startswith("| model |")
    assert "- victim.safetensors certificate: Lipschitz surrogate" in (tmp_path / "t.md").read_text()  # the table's certificate line
    png = tmp_path / "curve.png"
    proc = run("eval_attacks.py", "--model", path, "--attacks", "random", "--episodes", 2, "--epsilons", 0, 0.1, "--json", out, "--plot", png)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("victim.safetensors certificate: ") == 2 and "at eps 0.1" in proc.stdout  # one per sweep point
    sweep = json.loads(out.read_text())["sweep"][path]
    assert [p["epsilon"] for p in sweep] == [0, 0.1]
    assert sweep[0]["attacks"]["random"]["mean"] == sweep[0]["natural"]["mean"]  # eps 0: no perturbation
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_learned_attacks_train_once_then_load_from_cache(victim, tmp_path):
    path, _ = victim
    flags = ["--model", path, "--attacks", "rs", "sa_rl", "pa_ad", "--episodes", 2, "--rs-steps", 300, "--sa-rl-steps", 256, "--pa-ad-steps", 256,
             "--json", tmp_path / "a.json"]
    first = run("eval_attacks.py", *flags)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stderr.count("trained and cached") == 5 and "loaded" not in first.stderr.replace("trained and cached", "")
    second = run("eval_attacks.py", *flags[:-1], tmp_path / "b.json")
    assert second.returncode == 0 and second.stderr.count(": loaded ") == 5, second.stderr[-3000:]
    a, b = (json.loads((tmp_path / f).read_text())["results"][0] for f in ("a.json", "b.json"))
    assert all(a["attacks"][k]["returns"] == b["attacks"][k]["returns"] for k in ("rs", "sa_rl", "pa_ad"))  # same learned attacks
    assert len(a["attacks"]["rs"]["grid_means"]) == 3 and a["attacks"]["rs"]["mean"] == min(a["attacks"]["rs"]["grid_means"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epsilon", "-0.1"], "budget must be finite and >= 0"),
        (["--epsilon", "nan"], "budget must be finite and >= 0"),
        (["--json", "/nonexistent-dir/out.json"], "not writable"),
        (["--torch-threads", "0"], "--torch-threads must be positive"),
        (["--attacks", "nope"], "unknown attack 'nope'"),
        (["--episodes", "0"], "must be positive"),
        (["--env-id", "Walker2d-v4"], "checkpoint is for Hopper-v4, not Walker2d-v4"),  # another robot
        (["--env-id", "Hopper-v99"], "--env-id 'Hopper-v99' is not a registered gymnasium environment"),
    ],
)
def test_cli_bad_input(victim, args, message):
    path, _ = victim
    assert message in one_line_error(run("eval_attacks.py", "--model", path, *args))


def test_cli_unknown_env_needs_epsilon(tmp_path):
    args = P.resolve_args(P.Args(env_id="InvertedPendulum-v4"))
    path = str(tmp_path / "ip.safetensors")
    P.save_checkpoint(path, P.Agent(4, 1, args, [torch.Generator().manual_seed(0)]), 0, args, global_step=0)
    assert "pass --epsilon" in one_line_error(run("eval_attacks.py", "--model", path, "--attacks", "random", "--episodes", 1))
    proc = run("eval_attacks.py", "--model", path, "--attacks", "random", "--episodes", 1, "--epsilon", 0.1)
    assert proc.returncode == 0, proc.stderr[-2000:]


def copy_victim(victim, folder):
    """The victim checkpoint in another folder, so that its attack cache (<file>.attacks/) starts empty."""
    path = os.path.join(folder, "victim.safetensors")
    shutil.copy(victim[0], path)
    return path


def test_cli_model_folder_is_an_error(victim, tmp_path):
    copy_victim(victim, tmp_path)
    shutil.copy(victim[0], tmp_path / "other.safetensors")
    line = one_line_error(run("eval_attacks.py", "--model", tmp_path, "--attacks", "random", "--episodes", 1))
    assert f"{tmp_path} is a folder (holds 2 checkpoints)" in line and f"--model {tmp_path}/*.safetensors" in line


def test_cli_env_id_same_robot_other_version(victim, tmp_path):
    path, _ = victim
    out = tmp_path / "v5.json"
    proc = run("eval_attacks.py", "--model", path, "--env-id", "Hopper-v5", "--attacks", "random", "--episodes", 2,
               "--json", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (r,) = json.loads(out.read_text())["results"]
    assert (r["env_id"], r["checkpoint_env_id"], r["epsilon"]) == ("Hopper-v5", "Hopper-v4", 0.075)  # eps: Hopper-v5's
    assert "| victim.safetensors | Hopper-v5 | 0.075 |" in proc.stdout


def test_cli_seed_reuses_learned_attacks_attack_seed_retrains(victim, tmp_path):
    path = copy_victim(victim, tmp_path)
    out = tmp_path / "out.json"

    def evaluate_cli(*flags):
        proc = run("eval_attacks.py", "--model", path, "--attacks", "sa_rl", "--sa-rl-steps", 256, "--episodes", 2,
                   "--json", out, *flags)
        assert proc.returncode == 0, proc.stderr[-3000:]
        r = json.loads(out.read_text())["results"][0]
        return proc.stderr, (r["seed"], r["attack_seed"])

    err, seeds = evaluate_cli()
    assert "sa_rl: trained and cached" in err and seeds == (0, 0)
    err, seeds = evaluate_cli("--seed", 1)  # other evaluation episodes, the same adversary
    assert "sa_rl: loaded" in err and "trained" not in err and seeds == (1, 0)
    err, seeds = evaluate_cli("--attack-seed", 1)
    assert "sa_rl: trained and cached" in err and seeds == (0, 1)
    assert len(os.listdir(path + ".attacks")) == 2


@pytest.fixture(scope="module")
def learned_cli(victim, tmp_path_factory):
    """stderr and result of one evaluation (captured, so off a terminal) under rs, sa_rl and pa_ad with tiny
    budgets, of a fresh copy of the victim whose sa_rl adversary was trained and cached by an earlier run."""
    path = copy_victim(victim, tmp_path_factory.mktemp("learned_cli"))
    tiny = ["--rs-steps", 2000, "--sa-rl-steps", 256, "--pa-ad-steps", 256, "--episodes", 2]
    proc = run("eval_attacks.py", "--model", path, "--attacks", "sa_rl", *tiny)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = os.path.join(os.path.dirname(path), "out.json")
    proc = run("eval_attacks.py", "--model", path, "--attacks", "rs", "sa_rl", "pa_ad", *tiny, "--json", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out) as f:
        return proc.stderr, json.load(f)["results"][0]


def test_cli_will_train_line_names_the_uncached_attacks(learned_cli):
    err, _ = learned_cli
    lines = err.splitlines()
    (i,) = [i for i, line in enumerate(lines) if line.startswith("will train:")]
    assert re.fullmatch(r"will train: rs \(3 Q functions x 2k steps, ~\d+ s\), pa_ad \(256 steps, ~\d+ s\) "
                        r"\(~\d+ s in all\); cached: sa_rl", lines[i]), lines[i]
    assert i < min(j for j, line in enumerate(lines) if " natural: " in line)  # before any evaluation


def test_cli_rs_lines_name_their_settings_and_the_strongest(learned_cli):
    err, r = learned_cli
    labels = ["rs[reg=0.0]", "rs[reg=0.1]", "rs[reg=1.0]"]
    for label in labels:
        assert f"\n{label}: trained and cached " in err
        assert re.search(rf"^victim\.safetensors eps 0\.075 {re.escape(label)}: -?\d+\.\d \+- ", err, re.M), label
    rs = r["attacks"]["rs"]
    assert rs["grid_labels"] == labels and rs["mean"] == min(rs["grid_means"])
    strongest = labels[rs["grid_means"].index(rs["mean"])]
    assert rs["strongest"] == strongest
    grid = ", ".join(f"{label} {mean:.1f}" for label, mean in zip(labels, rs["grid_means"]))
    assert f"\nvictim.safetensors eps 0.075 rs: the strongest is {strongest} (of {grid})\n" in err
    # none unlabelled, but the line announcing the grid's fit side by side
    assert not re.search(r"^(victim\.safetensors eps 0\.075 )?rs: (?!the strongest|fitting 3 Q functions in one process)", err, re.M)


def test_cli_progress_lines_off_a_terminal(learned_cli):
    err, _ = learned_cli
    assert "\r" not in err  # no tqdm bar
    line = r"^(\S+(?: collecting| TD)?): (\d+)/(\d+) (steps|updates) \((\d+)%\), \d+ \4/s, ETA \S+ (?:s|min|h)"
    progress = re.findall(line, err, re.M)
    seen = {(what, int(pct)) for what, _, _, _, pct in progress}
    # every ~10% of each phase: the TD epochs of the grid's Q functions side by side (30 epochs) at 10, 20, ..., 100%
    assert {pct for what, pct in seen if what == "rs TD"} == set(range(10, 101, 10))
    assert {what for what, _ in seen} == {"rs collecting", "rs TD", "pa_ad"}  # sa_rl was cached: it does not train
    assert "rs: fitting 3 Q functions in one process on Hopper-v4" in err  # one victim: its rollouts collected once
    assert ("pa_ad", 100) in seen  # one PPO iteration: its only line is the last
    assert all(done == total for what, done, total, _, pct in progress if pct == "100")


def test_cli_quiet_output(tmp_path, root):
    """eval_attacks.py as a user sees it: MuJoCo's settotalmass deprecation never (nor MUJOCO_LOG.TXT), the -v4 notice
    at most once, however many envs the evaluation creates."""
    model = os.path.join(root, "zoo", "ppo_continuous__HalfCheetah-v4.safetensors")
    proc = run("eval_attacks.py", "--model", model, "--attacks", "random", "--episodes", 2, cwd=tmp_path, timeout=120, python_warnings=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "settotalmass" not in proc.stderr and not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert proc.stderr.count("is out of date") <= 1, proc.stderr
