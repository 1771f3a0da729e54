"""envs/sumo.py: PettingZoo API, seeding, RoboSumo's rules (ring / tatami, falls, draws), zero-sum terminal rewards,
the shaping coefficient, egocentric observations (the 180-degree mirror swaps the agents' observations), MjSpec
prefixes, option errors, rendering."""
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from envs.sumo import AGENTS, parallel_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def idle(env):
    return {a: np.zeros(env.n_actions) for a in env.agents}


def pusher(o):
    """Turn toward the opponent and drive at it, from the observation only (puck layout: opponent at o[6:8])."""
    angle = math.atan2(o[7], o[6])
    return np.clip([1.0, 3.0 * o[7], 3.0 * angle], -1.0, 1.0)


def play(env, policy0, policy1, seed=0, limit=10_000):
    obs, _ = env.reset(seed=seed)
    for _ in range(limit):
        obs, rewards, terms, truncs, infos = env.step({"agent0": policy0(obs["agent0"]), "agent1": policy1(obs["agent1"])})
        if not env.agents:
            return rewards, terms, truncs, infos
    raise AssertionError("the game did not end")


def yaw_quat(yaw):
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def mirror(env, qpos, qvel):
    """The scene rotated by 180 degrees about the vertical axis through the centre, agents swapped."""
    qpos, qvel = np.array(qpos), np.array(qvel)
    out_q, out_v = qpos.copy(), qvel.copy()
    for i in range(2):
        src_q, src_v = env._qpos_adr[1 - i], env._qvel_adr[1 - i]
        dst_q, dst_v = env._qpos_adr[i], env._qvel_adr[i]
        q = qpos[src_q:src_q + env.nq_agent].copy()
        v = qvel[src_v:src_v + env.nv_agent].copy()
        q[:2] *= -1.0
        v[:2] *= -1.0  # world-frame linear velocity (slide joints / free joint)
        if env.body == "puck":
            q[2] += math.pi
        else:
            w, x, y, z = q[3:7]
            q[3:7] = -z, -y, x, w  # (0, 0, 0, 1) * q: 180 degrees about z, then the torso's own rotation
        out_q[dst_q:dst_q + env.nq_agent] = q
        out_v[dst_v:dst_v + env.nv_agent] = v
    return out_q, out_v


@pytest.mark.parametrize("body", ["puck", "ant"])
def test_parallel_api(body):
    env = parallel_env(body)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the API test reports its findings as warnings
        parallel_api_test(env, num_cycles=1000)
    parallel_seed_test(lambda: parallel_env(body))
    assert env.observation_space("agent0").shape == (env.obs_dim,) == (15 if body == "puck" else 42,)
    assert env.action_space("agent1").shape == (3 if body == "puck" else 8,)


@pytest.mark.parametrize("body", ["puck", "ant"])
def test_seeded_resets_are_deterministic(body):
    env, other = parallel_env(body), parallel_env(body)
    first, _ = env.reset(seed=7)
    again, _ = env.reset(seed=7)
    fresh, _ = other.reset(seed=7)
    different, _ = other.reset(seed=8)
    for a in AGENTS:
        np.testing.assert_array_equal(first[a], again[a])
        np.testing.assert_array_equal(first[a], fresh[a])
        assert not np.array_equal(first[a], different[a])
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (40, 2, env.n_actions))
    runs = []
    for e in (env, other):
        e.reset(seed=7)
        trajectory = []
        for a in actions:
            obs, rewards, done = e.step_array(a)
            trajectory.append((obs, rewards))
            if done:
                break
        runs.append(trajectory)
    assert len(runs[0]) == len(runs[1])
    for (o1, r1), (o2, r2) in zip(*runs):
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2


def test_start_positions_face_each_other():
    env = parallel_env("puck", init_noise=0.0)
    obs, _ = env.reset(seed=0)
    q = env.data.qpos
    np.testing.assert_allclose(q[env._qpos_adr[0]:env._qpos_adr[0] + 3], [-0.5, 0.0, 0.0])
    np.testing.assert_allclose(q[env._qpos_adr[1]:env._qpos_adr[1] + 3], [0.5, 0.0, math.pi])
    for a in AGENTS:  # the opponent 1 m straight ahead, facing back; centre 0.5 m ahead; 0.5 m to the edge; all time left
        np.testing.assert_allclose(obs[a][3:14], [0.5, 0, 0.5, 1, 0, 0, 0, -1, 0, 0, 0.5], atol=1e-12)
        assert obs[a][14] == 1.0
    noisy = parallel_env("puck")
    noisy.reset(seed=0)
    assert 0 < np.abs(noisy.data.qpos - q).max() <= 0.1


def test_observations_are_in_own_frame():
    """Agent 0 at (0.3, -0.2) facing +y, moving at (0.5, 0): the opponent at (0.3, 0.6) is 0.8 m ahead, the centre
    0.2 m ahead and 0.3 m to the left; every number written out by hand."""
    env = parallel_env("puck")
    env.reset(seed=0)
    qpos = np.array([0.3, -0.2, math.pi / 2, 0.3, 0.6, 0.0])
    qvel = np.array([0.5, 0.0, 0.2, 0.0, -0.4, 0.0])
    obs = env.set_state(qpos, qvel)
    expected0 = [0.0, -0.5, 0.2,            # own velocity: to the right; yaw rate
                 0.2, 0.3, 1.0 - math.hypot(0.3, 0.2),  # centre ahead-left; edge distance
                 0.8, 0.0, -0.4, 0.0,       # opponent ahead, moving toward us
                 0.0, -1.0, 0.0, 1.0 - math.hypot(0.3, 0.6), 1.0]  # opponent faces our right; its yaw rate; edge; time
    np.testing.assert_allclose(obs[0], expected0, atol=1e-12)
    # agent 1 faces +x: agent 0 is 0.8 m to its right (-y), moving right-ward at 0.5
    np.testing.assert_allclose(obs[1][6:12], [0.0, -0.8, 0.5, 0.0, 0.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("body", ["puck", "ant"])
def test_mirrored_scene_swaps_observations(body):
    env = parallel_env(body)
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(5):  # a generic, asymmetric state
        env.step_array(rng.uniform(-1, 1, (2, env.n_actions)) * 0.3)
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    obs = env.set_state(qpos, qvel)
    assert np.abs(obs[0] - obs[1]).max() > 1e-2  # the two agents see different things
    mirrored = env.set_state(*mirror(env, qpos, qvel))
    np.testing.assert_allclose(mirrored[1], obs[0], atol=1e-9)
    np.testing.assert_allclose(mirrored[0], obs[1], atol=1e-9)


def test_mirrored_dynamics_with_swapped_actions():
    """Controls act in the puck's own frame: the mirrored game with the actions swapped is the same game."""
    env, twin = parallel_env("puck"), parallel_env("puck")
    obs = env.reset_array(seed=5)
    twin.reset_array(seed=5)
    twin.set_state(*mirror(env, env.data.qpos, env.data.qvel))
    rng = np.random.default_rng(2)
    touched = False
    for _ in range(60):
        actions = np.array([pusher(obs[0]), pusher(obs[1])]) + rng.normal(0, 0.3, (2, 3))
        obs, rewards, done = env.step_array(actions)
        obs_twin, rewards_twin, done_twin = twin.step_array(actions[::-1])
        touched |= env.data.ncon > 0
        np.testing.assert_allclose(obs_twin[::-1], obs, atol=1e-8)
        np.testing.assert_allclose(rewards_twin[::-1], rewards, atol=1e-10)
        assert done == done_twin
        if done:
            break
    assert touched


@pytest.mark.parametrize("arena", ["ring", "tatami"])
def test_pushed_out_loses_zero_sum(arena):
    env = parallel_env("puck", arena=arena, shaping=0.0)
    rewards, terms, truncs, infos = play(env, pusher, lambda o: np.zeros(3))
    assert rewards == {"agent0": 1.0, "agent1": -1.0}
    assert terms == {"agent0": True, "agent1": True} and truncs == {"agent0": False, "agent1": False}
    assert infos["agent0"]["outcome"] == "win" and infos["agent1"]["outcome"] == "loss"
    assert infos["agent0"]["winner"] == infos["agent1"]["winner"] == "agent0"
    assert env._t < 100 and env.agents == []
    x, y = env.data.qpos[env._qpos_adr[1]:env._qpos_adr[1] + 2]
    assert (math.hypot(x, y) if arena == "ring" else max(abs(x), abs(y))) > env.radius
    with pytest.raises(ValueError, match="call reset"):
        env.step(idle(env))


@pytest.mark.parametrize("body", ["puck", "ant"])
def test_placed_outside_loses(body):
    """The corner (0.8 r, 0.8 r) is outside the ring but inside the tatami."""
    for arena, loses in (("ring", True), ("tatami", False)):
        env = parallel_env(body, arena=arena, shaping=0.0)
        env.reset(seed=0)
        qpos = env.data.qpos.copy()
        qa = env._qpos_adr[1]
        qpos[qa:qa + 2] = 0.8 * env.radius, 0.8 * env.radius
        env.set_state(qpos, np.zeros(env.model.nv))
        _, rewards, terms, _, infos = env.step(idle(env))
        if loses:
            assert rewards == {"agent0": 1.0, "agent1": -1.0} and all(terms.values())
            assert infos["agent1"]["outcome"] == "loss" and infos["agent0"]["winner"] == "agent0"
        else:
            assert rewards == {"agent0": 0.0, "agent1": 0.0} and not any(terms.values())
            assert "outcome" not in infos["agent0"]


def test_both_out_is_a_draw():
    env = parallel_env("puck", shaping=0.0, draw_reward=-0.5)
    env.reset(seed=0)
    env.set_state([-1.1, 0, 0, 1.1, 0, math.pi], np.zeros(6))
    _, rewards, terms, _, infos = env.step(idle(env))
    assert rewards == {"agent0": -0.5, "agent1": -0.5} and all(terms.values())
    assert infos["agent0"]["outcome"] == infos["agent1"]["outcome"] == "draw" and infos["agent0"]["winner"] is None


def test_ant_falling_loses():
    env = parallel_env("ant", shaping=0.0)
    env.reset(seed=0)
    qpos = env.data.qpos.copy()
    qa = env._qpos_adr[0]
    qpos[qa + 2:qa + 7] = [0.6, 0.0, 1.0, 0.0, 0.0]  # upside down (180 degrees about x), 0.6 m up
    env.set_state(qpos, np.zeros(env.model.nv))
    for _ in range(40):
        _, rewards, terms, _, infos = env.step(idle(env))
        if not env.agents:
            break
    assert rewards == {"agent0": -1.0, "agent1": 1.0}
    assert infos["agent0"]["outcome"] == "loss" and infos["agent1"]["outcome"] == "win"
    assert env.data.qpos[qa + 2] < env.fall_height < env.data.qpos[env._qpos_adr[1] + 2]
    # RoboSumo's rule (only leaving the arena loses): fall_height=0 lets the ant on its back fight on
    tolerant = parallel_env("ant", shaping=0.0, fall_height=0.0)
    tolerant.reset(seed=0)
    tolerant.set_state(qpos, np.zeros(tolerant.model.nv))
    for _ in range(40):
        tolerant.step(idle(tolerant))
    assert tolerant.agents == list(AGENTS)


@pytest.mark.parametrize("draw_reward", [0.0, -0.5])
def test_draw_at_time_limit(draw_reward):
    env = parallel_env("puck", max_steps=20, shaping=0.0, draw_reward=draw_reward)
    obs, _ = env.reset(seed=0)
    for t in range(1, 21):
        obs, rewards, terms, truncs, infos = env.step(idle(env))
        assert obs["agent0"][-1] == pytest.approx(1 - t / 20)
        if t < 20:
            assert rewards == {"agent0": 0.0, "agent1": 0.0} and not any(terms.values())
    assert all(terms.values()) and not any(truncs.values()) and env.agents == []
    assert rewards == {"agent0": draw_reward, "agent1": draw_reward}
    assert infos["agent0"]["outcome"] == infos["agent1"]["outcome"] == "draw" and infos["agent0"]["winner"] is None


def test_shaping_coefficient():
    """shaping 0: only the terminal +-1; shaping c: c times the shaping terms reported in infos, every step."""
    rewards = {}
    for coef in (0.0, 1.0, 0.25):
        env = parallel_env("puck", shaping=coef)
        obs, _ = env.reset(seed=4)
        total, steps = np.zeros(2), 0
        while env.agents:
            obs, r, _, _, infos = env.step({"agent0": pusher(obs["agent0"]), "agent1": np.full(3, 0.2)})
            terminal = np.array([1.0, -1.0]) if not env.agents else 0.0
            shaping = np.array([infos[a]["shaping"] for a in AGENTS])
            np.testing.assert_allclose([r["agent0"], r["agent1"]], terminal + coef * shaping, atol=1e-12)
            if coef == 0.0:
                assert [r["agent0"], r["agent1"]] == list(np.zeros(2) + terminal)
            total += [r["agent0"], r["agent1"]]
            steps += 1
        assert infos["agent0"]["outcome"] == "win"
        rewards[coef] = total
    assert rewards[0.0].tolist() == [1.0, -1.0]
    assert rewards[1.0][0] > 2.0 and rewards[1.0][1] < -1.0  # approaching and pushing out pays; being pushed back costs
    np.testing.assert_allclose(rewards[0.25] - rewards[0.0], 0.25 * (rewards[1.0] - rewards[0.0]), atol=1e-9)
    env = parallel_env("puck")  # set_shaping and reset options change it
    env.set_shaping(0.0)
    assert env.shaping == 0.0
    env.reset(seed=0, options={"shaping": 0.5})
    assert env.shaping == 0.5
    with pytest.raises(ValueError, match="shaping"):
        env.set_shaping(-1.0)


@pytest.mark.parametrize("draw_reward", [0.0, -0.5])
def test_adversary_reward_is_agent_1s_shaping_minus_the_victims_game_result(draw_reward):
    """adversary_reward(): agent 1's own shaping times the coefficient, minus agent 0's game reward, every step; so the
    reward of agent 1 itself when draws pay 0 (zero-sum), and not minus agent 0's reward while shaping is on."""
    for agent1, outcome in ((lambda o: pusher(o), "loss"), (lambda o: np.zeros(3), "draw")):
        env = parallel_env("puck", shaping=0.5, draw_reward=draw_reward, max_steps=40)
        obs, _ = env.reset(seed=4)
        differs = False
        while env.agents:
            obs, r, _, _, infos = env.step({"agent0": np.full(3, 0.2), "agent1": agent1(obs["agent1"])})
            game0 = {"loss": -1.0, "draw": draw_reward}[outcome] if not env.agents else 0.0
            assert env.adversary_reward() == pytest.approx(0.5 * infos["agent1"]["shaping"] - game0, abs=1e-12)
            if draw_reward == 0.0:
                assert env.adversary_reward() == pytest.approx(r["agent1"], abs=1e-12)
            differs |= abs(env.adversary_reward() + r["agent0"]) > 1e-6
        assert infos["agent0"]["outcome"] == outcome and differs
    env.reset(seed=0)
    assert env.adversary_reward() == 0.0


@pytest.mark.parametrize("body", ["puck", "ant"])
def test_mjspec_names_carry_prefixes(body):
    env = parallel_env(body)
    m = env.model
    named = {kind: [getattr(m, kind)(i).name for i in range(n)]
             for kind, n in (("joint", m.njnt), ("actuator", m.nu), ("body", m.nbody))}
    for kind in ("joint", "actuator"):
        assert all(n.startswith(("agent0/", "agent1/")) for n in named[kind])
        half = len(named[kind]) // 2
        assert [n.removeprefix("agent0/") for n in named[kind][:half]] == [n.removeprefix("agent1/") for n in named[kind][half:]]
    assert {"agent0/torso", "agent1/torso"} <= set(named["body"])
    assert all(n.startswith(("agent0/", "agent1/")) for n in named["body"][1:] if n)
    if body == "ant":
        assert "agent1/hip_1" in named["actuator"] and "agent0/root" in named["joint"]
        assert m.jnt_range[m.joint("agent0/ankle_1").id] == pytest.approx(np.radians([30, 70]))  # degrees kept
    else:
        assert named["actuator"][:3] == ["agent0/forward", "agent0/strafe", "agent0/turn"]
    assert env.mjspec.body("agent1/torso") is not None


def test_agents_collide_with_each_other_not_themselves():
    env = parallel_env("ant")
    m = env.model
    roots = [m.body(int(m.body_rootid[b])).name for b in m.geom_bodyid]
    bits = [{(int(m.geom_contype[g]), int(m.geom_conaffinity[g])) for g in range(m.ngeom) if roots[g] == f"{a}/torso"}
            for a in AGENTS]
    assert sum(r == "agent0/torso" for r in roots) == 13  # the torso sphere and 12 leg capsules
    (ct0, ca0), = bits[0]
    (ct1, ca1), = bits[1]
    assert ct0 & ca1 and ct1 & ca0 and not ct0 & ca0 and not ct1 & ca1
    assert ca0 & int(m.geom_contype[m.geom("floor").id])


@pytest.mark.parametrize("body, options, message", [
    ("spider", {}, "unknown body"),
    ("puck", {"arena": "circle"}, "unknown arena"),
    ("puck", {"radius": -1.0}, "radius"),
    ("puck", {"radius": float("nan")}, "radius"),
    ("ant", {"max_steps": 0}, "max_steps"),
    ("ant", {"max_steps": 2.5}, "max_steps"),
    ("puck", {"start_distance": 1.0}, "inside the arena"),
    ("puck", {"fall_height": 0.1}, "ant only"),
    ("puck", {"render_mode": "human"}, "render_mode"),
    ("puck", {"shaping": -0.1}, "shaping"),
    ("puck", {"colour": "red"}, "unknown sumo option"),
])
def test_bad_options_raise_one_line(body, options, message):
    with pytest.raises(ValueError, match=message) as err:
        parallel_env(body, **options)
    assert "\n" not in str(err.value)


def test_bad_actions_raise():
    env = parallel_env("puck")
    with pytest.raises(ValueError, match="reset"):
        env.step_array(np.zeros((2, 3)))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="both live agents"):
        env.step({"agent0": np.zeros(3)})
    with pytest.raises(ValueError, match="set_state"):
        env.set_state(np.zeros(5), np.zeros(6))


def test_render_rgb_array():
    code = ("import numpy as np\nfrom envs.sumo import parallel_env\n"
            "env = parallel_env('puck', render_mode='rgb_array', width=64, height=48)\nenv.reset(seed=0)\n"
            "img = env.render()\nassert img.shape == (48, 64, 3) and img.dtype == np.uint8 and img.std() > 1, img.shape\n"
            "env.close()\nprint('ok')")
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.setdefault("MUJOCO_GL", "egl")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "AssertionError" not in proc.stderr:
        pytest.skip(f"no offscreen GL ({env['MUJOCO_GL']}): {proc.stderr.strip().splitlines()[-1:]}")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
