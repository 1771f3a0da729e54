"""Two-agent sumo on MuJoCo: a PettingZoo ParallelEnv with RoboSumo's rules (issue 14).

The competitive setting of the Robosumo experiments (Sec. 6, App. E) in Liu et al., "Rethinking Adversarial Policies:
A Generalized Attack Formulation and Provable Defense in RL", ICLR 2024, arXiv 2305.17342, after RoboSumo
(Al-Shedivat et al. 2018, github.com/openai/robosumo), rebuilt on the `mujoco` bindings with MjSpec: the scene is
an arena plus one body spec attached twice, under the name prefixes "agent0/" and "agent1/". docs/sumo.md has the
rules, observations, rewards and options in full.

    from envs.sumo import parallel_env
    env = parallel_env("puck")                 # or "ant"; options as keywords, e.g. arena="tatami"
    obs, infos = env.reset(seed=0)
    obs, rewards, terminations, truncations, infos = env.step({a: env.action_space(a).sample() for a in env.agents})

Bodies: "puck" (a disc sliding on the floor: planar x, y and yaw joints, 3 motors: thrust forward, thrust sideways,
turn) and "ant" (gymnasium's ant.xml, 8 motors). Agent 0 starts at (-d, 0) facing +x, agent 1 at (+d, 0) facing -x.
An agent loses when its torso centre leaves the arena or (ant) its torso falls below `fall_height`; +1 / -1 then,
`draw_reward` to both at the time limit or when both lose at once, plus dense shaping times a coefficient that
training anneals (`set_shaping`). Observations are in the agent's own heading frame, so the scene rotated by 180
degrees gives agent 1 exactly what agent 0 had.

`step_array` / `reset_array` are the same game without PettingZoo's dicts: actions [2, n_actions] in, observations
[2, obs_dim] out.
"""
import inspect
import math
import os

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

BODIES = ("puck", "ant")
ARENAS = ("ring", "tatami")
AGENTS = ("agent0", "agent1")
RENDER_MODES = ("rgb_array",)
TIMESTEP = 0.01      # MuJoCo step (s): RoboSumo's and gymnasium's Ant
FRAME_SKIP = 5       # MuJoCo steps per env step: dt = 0.05 s, 20 env steps per second, as both
ANT_XML = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", "ant.xml")

# Per-body defaults. The ant's are RoboSumo's (tatami_size 2.0, start 1.15 from the centre, 500 steps); the puck's
# arena is half as large, so that the two meet within a second.
DEFAULTS = {
    "puck": {"radius": 1.0, "start_distance": 0.5, "fall_height": None},
    "ant": {"radius": 2.0, "start_distance": 1.15, "fall_height": 0.3},
}

# The puck: a 1 kg disc of radius 0.2 m whose contact with the floor is modelled by joint damping (the body has no
# vertical dof, so it never touches the floor): full thrust gives 1 m/s top speed with a 0.25 s time constant.
PUCK_RADIUS = 0.2
PUCK_HALF_HEIGHT = 0.05
PUCK_MASS = 1.0
PUCK_FORCE = 4.0        # N at |action| = 1, forward and sideways, in the puck's frame
PUCK_TORQUE = 0.4       # N m at |action| = 1
PUCK_DAMPING = 4.0      # N s / m on x and y
PUCK_YAW_DAMPING = 0.1  # N m s / rad

# Collision bits: the floor (1) touches the ants; each agent (2, 4) touches the other agent, never itself.
FLOOR_BIT = 1
AGENT_BITS = (2, 4)
COLORS = ((0.85, 0.3, 0.25, 1.0), (0.25, 0.45, 0.85, 1.0))
ENDED = "step after the game ended (or before reset); call reset()"


def parallel_env(body="puck", **options):
    """The sumo arena for `body` ("puck" or "ant"), as PettingZoo's modules create theirs; options: OPTIONS, see
    SumoEnv."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown sumo option(s) {', '.join(unknown)}; options are {', '.join(OPTIONS)}")
    return SumoEnv(body, **options)


def _finite(name, x, low=None):
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)) or not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {x!r}")
    if low is not None and x < low:
        raise ValueError(f"{name} must be >= {low}, got {x!r}")
    return float(x)


def _positive_int(name, x):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1:
        raise ValueError(f"{name} must be a positive integer, got {x!r}")
    return int(x)


def puck_spec():
    """One puck, body "torso" at the origin: slide joints x, y, hinge yaw, and motors forward, strafe (a site
    transmission, so the force is along the puck's own axes) and turn. Collision is a sphere (exact and cheap
    against the other sphere: the pucks meet at equal heights, so it acts as a disc); a cylinder shows it."""
    spec = mujoco.MjSpec()
    body = spec.worldbody.add_body(name="torso", pos=[0.0, 0.0, PUCK_HALF_HEIGHT])
    body.add_joint(name="x", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[1, 0, 0], damping=PUCK_DAMPING)
    body.add_joint(name="y", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0, 1, 0], damping=PUCK_DAMPING)
    body.add_joint(name="yaw", type=mujoco.mjtJoint.mjJNT_HINGE, axis=[0, 0, 1], damping=PUCK_YAW_DAMPING)
    body.add_geom(name="collision", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[PUCK_RADIUS, 0, 0], mass=PUCK_MASS,
                  group=3, friction=[0.5, 0.005, 0.0001])
    body.add_geom(name="disc", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[PUCK_RADIUS, PUCK_HALF_HEIGHT, 0], mass=0,
                  contype=0, conaffinity=0)
    body.add_geom(name="nose", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.05, 0.03, 0.01], mass=0, contype=0,
                  conaffinity=0, pos=[PUCK_RADIUS - 0.05, 0, PUCK_HALF_HEIGHT], rgba=[1, 1, 1, 1])
    body.add_site(name="thrust")
    limits = {"ctrlrange": [-1.0, 1.0], "ctrllimited": 1}
    spec.add_actuator(name="forward", trntype=mujoco.mjtTrn.mjTRN_SITE, target="thrust", gear=[PUCK_FORCE, 0, 0, 0, 0, 0], **limits)
    spec.add_actuator(name="strafe", trntype=mujoco.mjtTrn.mjTRN_SITE, target="thrust", gear=[0, PUCK_FORCE, 0, 0, 0, 0], **limits)
    spec.add_actuator(name="turn", trntype=mujoco.mjtTrn.mjTRN_JOINT, target="yaw", gear=[PUCK_TORQUE, 0, 0, 0, 0, 0], **limits)
    return spec


def ant_spec():
    """gymnasium's ant.xml as an MjSpec, without its floor, light and init_qpos numeric; its actuators named after
    their joints."""
    spec = mujoco.MjSpec.from_file(ANT_XML)
    spec.delete(spec.geom("floor"))
    for light in list(spec.worldbody.lights):
        spec.delete(light)
    for numeric in list(spec.numerics):
        spec.delete(numeric)
    for actuator in spec.actuators:
        actuator.name = actuator.target
    return spec


def build_spec(body, arena="ring", radius=None):
    """The scene: floor, arena marking, light, and the body spec attached twice, under "agent0/" and "agent1/"."""
    if body not in BODIES:
        raise ValueError(f"unknown body {body!r}; bodies are {', '.join(BODIES)}")
    if arena not in ARENAS:
        raise ValueError(f"unknown arena {arena!r}; arenas are {', '.join(ARENAS)}")
    radius = DEFAULTS[body]["radius"] if radius is None else radius
    spec = mujoco.MjSpec()
    spec.modelname = f"sumo_{body}"
    spec.option.timestep = TIMESTEP
    # the ant keeps gymnasium's integrator (RK4); Euler suffices for the puck (it integrates joint damping implicitly)
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_RK4 if body == "ant" else mujoco.mjtIntegrator.mjINT_EULER
    world = spec.worldbody
    world.add_light(name="sun", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, pos=[0, 0, 4], dir=[0, 0.3, -1])
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3 * radius, 3 * radius, 0.1],
                   rgba=[0.3, 0.3, 0.32, 1], contype=FLOOR_BIT, conaffinity=0, friction=[1, 0.5, 0.5])
    marking = {"contype": 0, "conaffinity": 0, "rgba": [0.8, 0.7, 0.45, 1], "pos": [0, 0, 0.001]}
    if arena == "ring":
        world.add_geom(name="arena", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[radius, 0.001, 0], **marking)
    else:
        world.add_geom(name="arena", type=mujoco.mjtGeom.mjGEOM_BOX, size=[radius, radius, 0.001], **marking)
    for i, prefix in enumerate(("agent0/", "agent1/")):
        child = puck_spec() if body == "puck" else ant_spec()
        for geom in child.geoms:
            if geom.contype or geom.conaffinity:
                geom.contype = AGENT_BITS[i]
                geom.conaffinity = AGENT_BITS[1 - i] | (FLOOR_BIT if body == "ant" else 0)
            if geom.name != "nose":
                geom.material = ""
                geom.rgba = COLORS[i]
        spec.attach(child, prefix=prefix, frame=world.add_frame(name=f"{prefix}start"))
    return spec


class SumoEnv(ParallelEnv):
    """Two-agent sumo. Options (keywords; None takes the body's default from DEFAULTS):

    arena: "ring" (a disc of `radius`) or "tatami" (a square of half-side `radius`).
    radius: arena size in m (puck 1.0, ant 2.0: RoboSumo's tatami_size).
    start_distance: each agent starts this far from the centre on the x axis (puck 0.5, ant 1.15: RoboSumo's).
    max_steps: env steps (0.05 s each) until a draw; 500 as RoboSumo's timestep_limit.
    init_noise: start noise: uniform +-init_noise on x, y, yaw (rad) and the ant's joint angles, normal with this
        std on the velocities (0.1: gymnasium's reset_noise_scale and RoboSumo's).
    shaping: the coefficient on the dense shaping rewards (1.0); anneal it with set_shaping.
    approach_coef, push_coef, ctrl_coef: shaping weights (1.0, 1.0, 5e-4), see docs/sumo.md.
    draw_reward: both agents' terminal reward in a draw (0.0: zero-sum; RoboSumo's ratio is -0.5).
    fall_height: the ant loses when its torso centre is below this (0.3 m: lying on its back; 0 turns it off).
    render_mode: None or "rgb_array"; width, height: frame size in pixels (480).
    """

    metadata = {"name": "sumo_v0", "render_modes": list(RENDER_MODES), "render_fps": round(1 / (TIMESTEP * FRAME_SKIP)),
                "is_parallelizable": True}

    def __init__(self, body="puck", *, arena="ring", radius=None, start_distance=None, max_steps=500, init_noise=0.1,
                 shaping=1.0, approach_coef=1.0, push_coef=1.0, ctrl_coef=5e-4, draw_reward=0.0, fall_height=None,
                 render_mode=None, width=480, height=480):
        if body not in BODIES:
            raise ValueError(f"unknown body {body!r}; bodies are {', '.join(BODIES)}")
        if arena not in ARENAS:
            raise ValueError(f"unknown arena {arena!r}; arenas are {', '.join(ARENAS)}")
        defaults = DEFAULTS[body]
        self.body, self.arena = body, arena
        self.radius = _finite("radius", defaults["radius"] if radius is None else radius)
        if self.radius <= 0:
            raise ValueError(f"radius must be > 0, got {radius!r}")
        self.start_distance = _finite("start_distance", defaults["start_distance"] if start_distance is None else start_distance, 0.0)
        self.max_steps = _positive_int("max_steps", max_steps)
        self.init_noise = _finite("init_noise", init_noise, 0.0)
        if self.start_distance + self.init_noise >= self.radius:
            raise ValueError(f"start_distance + init_noise ({self.start_distance + self.init_noise:g}) must be inside "
                             f"the arena (radius {self.radius:g})")
        self.shaping = _finite("shaping", shaping, 0.0)
        self.approach_coef = _finite("approach_coef", approach_coef, 0.0)
        self.push_coef = _finite("push_coef", push_coef, 0.0)
        self.ctrl_coef = _finite("ctrl_coef", ctrl_coef, 0.0)
        self.draw_reward = _finite("draw_reward", draw_reward)
        if body == "puck" and fall_height is not None:
            raise ValueError("fall_height applies to the ant only (a puck cannot fall)")
        self.fall_height = -math.inf  # a puck has no height to fall from
        if body == "ant":
            self.fall_height = _finite("fall_height", defaults["fall_height"] if fall_height is None else fall_height, 0.0)
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"unknown render_mode {render_mode!r}; render modes are None, {', '.join(RENDER_MODES)}")
        self.render_mode = render_mode
        self.width, self.height = _positive_int("width", width), _positive_int("height", height)

        self.mjspec = build_spec(body, arena, self.radius)
        self.model = self.mjspec.compile()
        self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, self.width)  # the renderer's buffer
        self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, self.height)
        self.data = mujoco.MjData(self.model)
        self.dt = TIMESTEP * FRAME_SKIP
        self.possible_agents = list(AGENTS)
        self.agents = []
        self._index(body)

        self.observation_spaces = {a: spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float64) for a in AGENTS}
        self.action_spaces = {a: spaces.Box(-1.0, 1.0, (self.n_actions,), np.float32) for a in AGENTS}
        self.state_space = spaces.Box(-np.inf, np.inf, (self.model.nq + self.model.nv,), np.float64)
        self._rng = np.random.default_rng()
        self._renderer = None
        self._t = 0
        self._done = True
        self.winner, self.outcomes = None, None

    def _index(self, body):
        """Addresses of each agent's qpos, qvel and controls, found through the prefixed names."""
        m = self.model
        root = "x" if body == "puck" else "root"
        self._qpos_adr = [int(m.joint(f"{a}/{root}").qposadr[0]) for a in AGENTS]
        self._qvel_adr = [int(m.joint(f"{a}/{root}").dofadr[0]) for a in AGENTS]
        self.nq_agent, self.nv_agent = m.nq // 2, m.nv // 2
        self.n_actions = m.nu // 2
        for i, a in enumerate(AGENTS):
            names = [m.actuator(k).name for k in range(i * self.n_actions, (i + 1) * self.n_actions)]
            if not all(n.startswith(a + "/") for n in names):  # attach keeps each agent's actuators together
                raise RuntimeError(f"actuators of {a} are not contiguous: {names}")
        self.actuator_names = [m.actuator(k).name.split("/", 1)[1] for k in range(self.n_actions)]
        self._ant = body == "ant"
        self._qpos0 = m.qpos0.copy()
        # own: (ant: z, up vector 3, joint angles 8,) velocity in own frame (puck 2, ant 3), angular velocity (puck 1:
        # yaw rate, ant 3: torso frame), (ant: joint velocities 8); arena: centre in own frame 2, distance to the
        # edge 1; opponent: position (puck 2, ant 3) and velocity (puck 2, ant 3) in own frame, relative heading
        # cos, sin, (puck: yaw rate 1 / ant: up vector 3), its distance to the edge 1; time left 1.
        self.obs_dim = 15 if body == "puck" else 26 + 3 + 12 + 1
        self._ctrl = self.data.ctrl
        self._tatami = self.arena == "tatami"

    # ---- PettingZoo API ----
    def observation_space(self, agent):
        return self.observation_spaces[agent]

    def action_space(self, agent):
        return self.action_spaces[agent]

    def set_shaping(self, coef):
        """The coefficient on the shaping rewards from the next step on (e.g. annealed from 1 to 0 over the first
        part of training, as Bansal et al. 2018 do)."""
        self.shaping = _finite("shaping", coef, 0.0)

    def reset(self, seed=None, options=None):
        """options: {"shaping": coef} sets the shaping coefficient; other keys are ignored (PettingZoo's API test
        passes arbitrary ones)."""
        obs = self.reset_array(seed, (options or {}).get("shaping"))
        return {AGENTS[0]: obs[0], AGENTS[1]: obs[1]}, {AGENTS[0]: {}, AGENTS[1]: {}}

    def step(self, actions):
        """actions: {agent: array [n_actions] in [-1, 1]} (clipped). The game ends for both agents at once:
        terminations all True on the step it is decided (the time limit is a rule of the game, a draw, so it is a
        termination too; truncations are always False). infos[agent]: "shaping" (this step's shaping reward before
        the coefficient) and, on the last step, "outcome" ("win", "loss" or "draw") and "winner" (agent or None)."""
        try:
            a0, a1 = actions[AGENTS[0]], actions[AGENTS[1]]
        except (KeyError, TypeError):
            if self._done:
                raise ValueError(ENDED) from None
            raise ValueError(f"step takes {{agent: action}} for both live agents {AGENTS}, got {actions!r}") from None
        n = self.n_actions
        self._ctrl[:n] = a0
        self._ctrl[n:] = a1
        obs, (r0, r1), done = self._advance()
        if done:
            outcome0, outcome1 = self.outcomes
            infos = {AGENTS[0]: {"shaping": self._shaping_terms[0], "outcome": outcome0, "winner": self.winner},
                     AGENTS[1]: {"shaping": self._shaping_terms[1], "outcome": outcome1, "winner": self.winner}}
        else:
            infos = {AGENTS[0]: {"shaping": self._shaping_terms[0]}, AGENTS[1]: {"shaping": self._shaping_terms[1]}}
        return ({AGENTS[0]: obs[0], AGENTS[1]: obs[1]}, {AGENTS[0]: r0, AGENTS[1]: r1},
                {AGENTS[0]: done, AGENTS[1]: done}, {AGENTS[0]: False, AGENTS[1]: False}, infos)

    def state(self):
        """The global state: qpos and qvel of the whole scene."""
        return np.concatenate([self.data.qpos, self.data.qvel])

    def render(self):
        """An RGB frame [height, width, 3] of the arena (needs offscreen GL: MUJOCO_GL=egl or osmesa)."""
        if self.render_mode is None:
            gymnasium.logger.warn('render() without render_mode; create the env with render_mode="rgb_array"')
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.height, self.width)
            self._camera = mujoco.MjvCamera()
            self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
            self._camera.lookat[:] = [0.0, 0.0, 0.2]
            self._camera.distance = 3.0 * self.radius + 1.0
            self._camera.elevation = -45.0
            self._camera.azimuth = 90.0
        self._renderer.update_scene(self.data, camera=self._camera)
        return self._renderer.render()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ---- lean path: arrays instead of dicts ----
    def reset_array(self, seed=None, shaping=None):
        """Reset; returns observations [2, obs_dim]. A seed re-seeds the start noise (same seed, same start)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if shaping is not None:
            self.set_shaping(shaping)
        m, d, rng, noise = self.model, self.data, self._rng, self.init_noise
        mujoco.mj_resetData(m, d)
        nq, nv = self.nq_agent, self.nv_agent
        n_pos = 3 + (nq - 7 if self._ant else 0)  # x, y, yaw (and the ant's joint angles)
        pos_noise = rng.uniform(-noise, noise, (2, n_pos))
        vel_noise = noise * rng.standard_normal((2, nv))
        for i in range(2):
            qa, va = self._qpos_adr[i], self._qvel_adr[i]
            x = (-1.0 if i == 0 else 1.0) * self.start_distance + pos_noise[i, 0]
            y = pos_noise[i, 1]
            yaw = (0.0 if i == 0 else math.pi) + pos_noise[i, 2]
            if self._ant:
                d.qpos[qa:qa + 2] = x, y  # z: the model's start height
                d.qpos[qa + 3:qa + 7] = math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)
                d.qpos[qa + 7:qa + nq] = self._qpos0[qa + 7:qa + nq] + pos_noise[i, 3:]
            else:
                d.qpos[qa:qa + 3] = x, y, yaw
            d.qvel[va:va + nv] = vel_noise[i]
        mujoco.mj_forward(m, d)
        self._t = 0
        self._done = False
        self.winner, self.outcomes = None, None
        self.agents = list(AGENTS)
        self._shaping_terms = self._game_rewards = (0.0, 0.0)
        obs, self._torso = self._observe()
        return obs

    def set_state(self, qpos, qvel):
        """Put the whole scene in this state mid-game (the step count is kept): scripted starts, tests. Returns the
        observations [2, obs_dim]; the next step's shaping is measured from here."""
        qpos, qvel = np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64)
        if qpos.shape != (self.model.nq,) or qvel.shape != (self.model.nv,):
            raise ValueError(f"set_state takes qpos [{self.model.nq}] and qvel [{self.model.nv}], got {qpos.shape} and {qvel.shape}")
        self.data.qpos[:], self.data.qvel[:] = qpos, qvel
        mujoco.mj_forward(self.model, self.data)
        obs, self._torso = self._observe()
        return obs

    def get_resume_state(self):
        """(array, dict) that set_resume_state() continues this game from, step for step: MuJoCo's integration state
        (positions, velocities, controls, the solver's warm start, time), the step count and the start-noise RNG. Every
        derived quantity the next step reads is recomputed from these (mj_step runs the forward pass first)."""
        physics = np.empty(mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(self.model, self.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
        return physics, dict(t=self._t, done=self._done, rng=self._rng.bit_generator.state)

    def set_resume_state(self, physics, state):
        """The inverse of get_resume_state(); returns the observations [2, obs_dim]."""
        self.reset_array()
        mujoco.mj_setState(self.model, self.data, np.asarray(physics, dtype=np.float64), mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)
        self._t, self._done = int(state["t"]), bool(state["done"])
        self._rng.bit_generator.state = state["rng"]
        if self._done:
            self.agents = []
        obs, self._torso = self._observe()
        return obs

    def step_array(self, actions):
        """actions [2, n_actions] (row i: agent i; clipped to [-1, 1]) -> (observations [2, obs_dim], rewards (r0, r1),
        done). After done: self.winner (agent name or None) and self.outcomes (agent 0's, agent 1's)."""
        self._ctrl[:] = np.reshape(actions, -1)
        return self._advance()

    # ---- the game ----
    def _advance(self):
        if self._done:
            raise ValueError(ENDED)
        mujoco.mj_step(self.model, self.data, FRAME_SKIP)  # MuJoCo clips the controls to [-1, 1] (ctrllimited)
        self._t += 1
        before = self._torso
        obs, after = self._observe()
        self._torso = after
        x0, y0, e0, x1, y1, e1 = before[:6]
        nx0, ny0, ne0, nx1, ny1, ne1 = after[:6]
        # shaping: own displacement toward the opponent, the opponent's move toward the edge (both in arena radii),
        # minus the mean squared action
        dx, dy = x1 - x0, y1 - y0
        dist = math.sqrt(dx * dx + dy * dy) or 1.0
        ux, uy = dx / dist, dy / dist
        radius, n = self.radius, self.n_actions
        a = [v * v if -1.0 < v < 1.0 else 1.0 for v in self._ctrl.tolist()]  # squared, clipped
        s0 = (self.approach_coef * ((nx0 - x0) * ux + (ny0 - y0) * uy) + self.push_coef * (e1 - ne1)) / radius \
            - self.ctrl_coef * sum(a[:n]) / n
        s1 = (self.approach_coef * ((x1 - nx1) * ux + (y1 - ny1) * uy) + self.push_coef * (e0 - ne0)) / radius \
            - self.ctrl_coef * sum(a[n:]) / n
        self._shaping_terms = (s0, s1)
        lost0, lost1 = ne0 < 0.0 or after[6] < self.fall_height, ne1 < 0.0 or after[7] < self.fall_height
        done = True
        if lost0 and not lost1:
            g0, g1 = -1.0, 1.0
            self.winner, self.outcomes = AGENTS[1], ("loss", "win")
        elif lost1 and not lost0:
            g0, g1 = 1.0, -1.0
            self.winner, self.outcomes = AGENTS[0], ("win", "loss")
        elif lost0 or self._t >= self.max_steps:
            g0 = g1 = self.draw_reward
            self.winner, self.outcomes = None, ("draw", "draw")
        else:
            g0 = g1 = 0.0
            done = False
        self._game_rewards = (g0, g1)
        if done:
            self._done = True
            self.agents = []
        coef = self.shaping
        return obs, (coef * s0 + g0, coef * s1 + g1), done

    def adversary_reward(self):
        """Agent 1's reward for the last step as agent 0's attacker: minus agent 0's game reward (+-1, the draw
        reward, 0 before the end) plus agent 1's own shaping times the coefficient. The game part is zero-sum (the
        attacker minimizes the victim's value once the shaping is annealed away); the shaping is agent 1's own
        (approach, push to the edge), as in self-play: minus the victim's shaping would pay the attacker for keeping
        away from the victim and the edge, and attackers trained on it settle for draws (docs/sumo.md)."""
        return self.shaping * self._shaping_terms[1] - self._game_rewards[0]

    def _edge(self, x, y):
        """Signed distance of (x, y) to the arena's edge (negative outside)."""
        if self._tatami:
            return self.radius - max(abs(x), abs(y))
        return self.radius - math.sqrt(x * x + y * y)

    def _observe(self):
        """(observations [2, obs_dim], torso summary (x0, y0, edge0, x1, y1, edge1, z0, z1)). Plain floats: for
        a few dozen numbers Python arithmetic is faster than numpy's per-call overhead."""
        q, v = self.data.qpos.tolist(), self.data.qvel.tolist()
        time_left = 1.0 - self._t / self.max_steps
        torso = []
        for i in range(2):
            qa, va = self._qpos_adr[i], self._qvel_adr[i]
            if self._ant:
                x, y, z, qw, qx, qy, qz = q[qa:qa + 7]
                hx, hy = 1.0 - 2.0 * (qy * qy + qz * qz), 2.0 * (qx * qy + qw * qz)  # torso x axis, in the plane
                norm = math.sqrt(hx * hx + hy * hy)
                c, s = (hx / norm, hy / norm) if norm > 1e-9 else (1.0, 0.0)
                up = [2.0 * (qx * qz - qw * qy), 2.0 * (qy * qz + qw * qx), 1.0 - 2.0 * (qx * qx + qy * qy)]
                extra = up  # the world's up axis in the torso frame (yaw-free tilt)
                vx, vy, vz = v[va:va + 3]
            else:
                x, y, yaw = q[qa:qa + 3]
                z, c, s = 0.0, math.cos(yaw), math.sin(yaw)
                vx, vy, vz = v[va], v[va + 1], 0.0
                extra = [v[va + 2]]  # yaw rate
            torso.append((x, y, z, c, s, vx, vy, vz, extra, self._edge(x, y)))
        rows = []
        for i in range(2):
            x, y, z, c, s, vx, vy, vz, extra, edge = torso[i]
            ox, oy, oz, oc, os_, ovx, ovy, ovz, oextra, oedge = torso[1 - i]
            dx, dy = ox - x, oy - y
            if self._ant:
                qa, va, nq, nv = self._qpos_adr[i], self._qvel_adr[i], self.nq_agent, self.nv_agent
                row = [z, *extra, *q[qa + 7:qa + nq], c * vx + s * vy, c * vy - s * vx, vz, *v[va + 3:va + nv]]
            else:
                row = [c * vx + s * vy, c * vy - s * vx, extra[0]]
            row += [-(c * x + s * y), s * x - c * y, edge,
                    c * dx + s * dy, c * dy - s * dx]
            if self._ant:
                row.append(oz - z)
            row += [c * ovx + s * ovy, c * ovy - s * ovx]
            if self._ant:
                row.append(ovz)
            row += [c * oc + s * os_, c * os_ - s * oc, *oextra, oedge, time_left]
            rows.append(row)
        t0, t1 = torso
        return np.array(rows), (t0[0], t0[1], t0[9], t1[0], t1[1], t1[9], t0[2], t1[2])


OPTIONS = tuple(inspect.signature(SumoEnv.__init__).parameters)[2:]  # the keywords after self and body
