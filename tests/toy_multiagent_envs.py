"""Small PettingZoo ParallelEnvs for the multi-agent tests (``--env-id toy_multiagent_envs:make_respawn``).

- ``RespawnEnv``: agents die (terminated) or time out (truncated) at seeded random steps, stay away a few steps,
  and come back under the same name; one agent joins only after the start. Dynamics never depend on actions
  (only rewards do), so what one agent does or sees cannot change another's observations.
- ``StateRespawnEnv``: ``RespawnEnv`` with PettingZoo's global state (``state()`` / ``state_space``), for the
  central critic.
- ``MaskedRespawnEnv``: ``RespawnEnv`` with PettingZoo's ``{"observation", "action_mask"}`` observations.
- ``CueTeamEnv``: a cooperative memory task: each agent sees a cue on the first step only, then blanks; on the
  last step the team is rewarded for every agent whose action equals its cue. Memoryless play scores 0.5.
- ``CueDuelEnv``: the same task as a zero-sum duel between ``left`` and ``right``, for self-play.
- ``RolesEnv``: two roles with different spaces, for named policies; ``StateRolesEnv`` adds a global state.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv
from toy_envs import check_legal, random_mask


class RespawnEnv(ParallelEnv):
    """Three agents that come and go.

    Observation: Box(4,) float32 ``[noise, agent id / 3, age / 10, 1 on the spawn step]``.
    Action: Discrete(2); reward 1 when the action equals ``noise > 0``, else 0.
    Each step a live agent dies (terminated) with probability ``p_die``, or times out (truncated) at age
    ``max_age``; it comes back 1..3 steps later. ``a2`` first appears at step 2. The env's episode ends after
    ``episode_len`` steps: every agent still there is truncated and removed.

    Args:
        p_die: chance per step that a live agent is terminated.
        max_age: steps after which an agent is truncated.
        episode_len: steps of the env's episode.
        perturb: an agent name whose observations get +0.5 on their first entry (tests of isolation).
    """

    metadata = {"name": "toy_respawn_v0", "render_modes": []}

    def __init__(self, p_die: float = 0.15, max_age: int = 7, episode_len: int = 30, perturb: str | None = None):
        self.possible_agents = ["a0", "a1", "a2"]
        self.p_die, self.max_age, self.episode_len, self.perturb = p_die, max_age, episode_len, perturb
        self._obs_space = spaces.Box(-2.0, 2.0, (4,), np.float32)
        self._act_space = spaces.Discrete(2)
        self.np_random = np.random.default_rng()
        self.agents: list[str] = []
        self.t = 0
        self.age: dict[str, int] = {}
        self.away: dict[str, int] = {}
        self.noise: dict[str, float] = {}

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def _obs(self, agent: str) -> np.ndarray:
        bump = 0.5 if agent == self.perturb else 0.0
        idx = self.possible_agents.index(agent)
        return np.array([self.noise[agent] + bump, idx / 3, self.age[agent] / 10, float(self.age[agent] == 0)],
                        dtype=np.float32)

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        self.t = 0
        self.agents = ["a0", "a1"]
        self.away = {"a2": 2}
        self.age = {a: 0 for a in self.agents}
        self.noise = {a: float(self.np_random.uniform(-1, 1)) for a in self.possible_agents}
        return {a: self._obs(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        rewards = {a: float(int(actions[a]) == int(self.noise[a] > 0)) for a in self.agents}
        # Fixed draws per step whatever the actions: dynamics are action-independent.
        draws = self.np_random.uniform(0, 1, size=len(self.possible_agents))
        delays = self.np_random.integers(1, 4, size=len(self.possible_agents))
        new_noise = self.np_random.uniform(-1, 1, size=len(self.possible_agents))
        terms = {a: False for a in self.agents}
        truncs = {a: False for a in self.agents}
        obs = {}
        for k, a in enumerate(self.possible_agents):
            self.noise[a] = float(new_noise[k])
        for k, a in enumerate(self.possible_agents):
            if a in self.agents:
                self.age[a] += 1
                if draws[k] < self.p_die:
                    terms[a] = True
                elif self.age[a] >= self.max_age:
                    truncs[a] = True
                obs[a] = self._obs(a)  # the last observation of an agent that leaves, too
                if terms[a] or truncs[a]:
                    self.away[a] = int(delays[k])
        if self.t >= self.episode_len:
            for a in self.agents:
                truncs[a] = not terms[a]
            self.agents = []
            return obs, rewards, terms, truncs, {a: {} for a in obs}
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        for a in self.possible_agents:
            if a not in self.agents and a in self.away and a not in terms:
                self.away[a] -= 1
                if self.away[a] <= 0:
                    del self.away[a]
                    self.agents.append(a)
                    self.age[a] = 0
                    obs[a] = self._obs(a)
        self.agents.sort(key=self.possible_agents.index)
        return obs, rewards, terms, truncs, {a: {} for a in obs}


class StateRespawnEnv(RespawnEnv):
    """``RespawnEnv`` with a global state: ``state()`` is Box(7,) float32 ``[t / episode_len, each agent's noise
    (3), each agent's age / 10 while it is there, else -1 (3)]``, a function of the env's attributes (so a
    restored env gives it again)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state_space = spaces.Box(-1.0, 10.0, (7,), np.float32)

    def state(self) -> np.ndarray:
        ages = [self.age[a] / 10 if a in self.agents else -1.0 for a in self.possible_agents]
        noise = [self.noise[a] for a in self.possible_agents]
        return np.array([self.t / self.episode_len, *noise, *ages], dtype=np.float32)


class CueTeamEnv(ParallelEnv):
    """A cooperative memory task for two agents.

    Observation: Box(3,) float32 ``[cue (+1 / -1 on step 0, then 0), 1 on step 0, t / length]``.
    Action: Discrete(2). Reward: 0 until the last step; there each agent gets the team's share,
    ``(number of agents whose action equals their cue) / 2``. Every agent is terminated at step ``length``.
    """

    metadata = {"name": "toy_cue_team_v0", "render_modes": []}

    def __init__(self, length: int = 6):
        self.possible_agents = ["left", "right"]
        self.length = length
        self._obs_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self._act_space = spaces.Discrete(2)
        self.np_random = np.random.default_rng()
        self.agents: list[str] = []
        self.t = 0
        self.cue: dict[str, int] = {}

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def _obs(self, agent: str) -> np.ndarray:
        first = self.t == 0
        return np.array([(2 * self.cue[agent] - 1) if first else 0.0, float(first), self.t / self.length],
                        dtype=np.float32)

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        self.cue = {a: int(self.np_random.integers(0, 2)) for a in self.agents}
        return {a: self._obs(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        last = self.t >= self.length
        reward = sum(int(actions[a]) == self.cue[a] for a in self.agents) / len(self.agents) if last else 0.0
        obs = {a: self._obs(a) for a in self.agents}
        rewards = {a: float(reward) for a in self.agents}
        terms = {a: last for a in self.agents}
        truncs = {a: False for a in self.agents}
        if last:
            self.agents = []
        return obs, rewards, terms, truncs, {a: {} for a in obs}


class CueDuelEnv(CueTeamEnv):
    """``CueTeamEnv`` as a zero-sum duel, for self-play: on the last step each agent gets (1 if its action equals
    its cue) minus (1 if the other's does). The one that remembers its cue better wins; memoryless play draws
    with itself on average."""

    metadata = {"name": "toy_cue_duel_v0", "render_modes": []}

    def step(self, actions):
        correct = {a: float(int(actions[a]) == self.cue[a]) for a in self.agents}
        obs, rewards, terms, truncs, infos = super().step(actions)
        if self.t >= self.length:
            left, right = correct["left"], correct["right"]
            rewards = {"left": left - right, "right": right - left}
        return obs, rewards, terms, truncs, infos


class MaskedRespawnEnv(RespawnEnv):
    """``RespawnEnv`` with PettingZoo's action masks: observation Dict {"observation": RespawnEnv's Box(4,),
    "action_mask": MultiBinary(3) int8}, action Discrete(3). Each live agent's mask is drawn every step (at least
    one legal action, from a generator of its own, so the dynamics are RespawnEnv's); an illegal action raises
    ``IllegalActionError``."""

    metadata = {"name": "toy_masked_respawn_v0", "render_modes": []}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._inner_space = self._obs_space
        self._obs_space = spaces.Dict({"observation": self._inner_space, "action_mask": spaces.MultiBinary(3)})
        self._act_space = spaces.Discrete(3)
        self.masks: dict[str, np.ndarray] = {}
        self.mask_rng = np.random.default_rng()

    def _obs(self, agent: str) -> dict:
        self.masks[agent] = random_mask(self.mask_rng, [3])
        return {"observation": super()._obs(agent), "action_mask": self.masks[agent]}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.mask_rng = np.random.default_rng(seed + 1)
        return super().reset(seed, options)

    def step(self, actions):
        for agent in self.agents:
            check_legal(self.masks[agent], [3], actions[agent])
        return super().step(actions)


class ActionKindRespawnEnv(RespawnEnv):
    """``RespawnEnv`` acting in another action space (``action_kind``): "box" Box(-1, 1, (2,)), "multi_discrete"
    MultiDiscrete([2, 3]) or "multi_binary" MultiBinary(2); an action's first entry plays RespawnEnv's Discrete(2)
    (a Box entry as 1 where it is positive)."""

    def __init__(self, action_kind: str = "box", **kwargs):
        super().__init__(**kwargs)
        self._act_space = {"box": spaces.Box(-1.0, 1.0, (2,), np.float32),
                           "multi_discrete": spaces.MultiDiscrete([2, 3]),
                           "multi_binary": spaces.MultiBinary(2)}[action_kind]

    def step(self, actions):
        return super().step({a: int(np.asarray(action).ravel()[0] > 0) for a, action in actions.items()})


class NotParallel:
    """What a wrong callable returns: not a ParallelEnv."""


class MixedSpacesEnv(CueTeamEnv):
    """Two agents with different action spaces (refused: they must share one policy)."""

    def action_space(self, agent):
        return spaces.Discrete(2 if agent == "left" else 3)


def make_respawn(**kwargs) -> RespawnEnv:
    return RespawnEnv(**kwargs)


def make_masked_respawn(**kwargs) -> MaskedRespawnEnv:
    return MaskedRespawnEnv(**kwargs)


def make_action_kind_respawn(**kwargs) -> ActionKindRespawnEnv:
    return ActionKindRespawnEnv(**kwargs)


def make_respawn_state(**kwargs) -> StateRespawnEnv:
    return StateRespawnEnv(**kwargs)


def make_cue_team(**kwargs) -> CueTeamEnv:
    return CueTeamEnv(**kwargs)


def make_cue_duel(**kwargs) -> CueDuelEnv:
    return CueDuelEnv(**kwargs)


def make_not_parallel() -> NotParallel:
    return NotParallel()


def make_mixed_spaces() -> MixedSpacesEnv:
    return MixedSpacesEnv()


class RolesEnv(ParallelEnv):
    """Two roles with different spaces, for named policies (``--policy-map 'hunter_*=hunter,prey_*=prey'``).

    Agents: ``hunter_0`` (always there) and ``prey_0``, ``prey_1``, which die and come back.

    | role   | observation                                  | action      | reward per step                     |
    |--------|----------------------------------------------|-------------|-------------------------------------|
    | hunter | Box(3,) ``[noise, t / episode_len, 1]``      | Discrete(3) | 1 when the action is 2              |
    | prey   | Box(2,) ``[noise, age / 10]``                | Discrete(2) | ``prey_reward`` when the action is 0 |

    Each step a live prey dies (terminated) with probability ``p_die`` and comes back 1..2 steps later; the
    env's episode ends after ``episode_len`` steps (everyone left is truncated). Dynamics never depend on
    actions, so one role's play cannot change what the other sees.

    Args:
        p_die: chance per step that a live prey is terminated.
        episode_len: steps of the env's episode.
        prey_reward: the prey's reward for action 0 (tests that change only the prey's rewards).
    """

    metadata = {"name": "toy_roles_v0", "render_modes": ["rgb_array"]}

    def __init__(self, p_die: float = 0.2, episode_len: int = 12, prey_reward: float = 1.0,
                 render_mode: str | None = None):
        self.possible_agents = ["hunter_0", "prey_0", "prey_1"]
        self.p_die, self.episode_len, self.prey_reward = p_die, episode_len, prey_reward
        self.render_mode = render_mode
        # Spaces as attributes of their own: a resume's env snapshot skips them (agents/rollout/env_state.py).
        self._hunter_obs, self._hunter_act = spaces.Box(-1.0, 1.0, (3,), np.float32), spaces.Discrete(3)
        self._prey_obs, self._prey_act = spaces.Box(-1.0, 1.0, (2,), np.float32), spaces.Discrete(2)
        self.np_random = np.random.default_rng()
        self.agents: list[str] = []
        self.t = 0
        self.age: dict[str, int] = {}
        self.away: dict[str, int] = {}
        self.noise: dict[str, float] = {}

    @staticmethod
    def _role(agent: str) -> str:
        return agent.split("_")[0]

    def observation_space(self, agent):
        return self._hunter_obs if self._role(agent) == "hunter" else self._prey_obs

    def action_space(self, agent):
        return self._hunter_act if self._role(agent) == "hunter" else self._prey_act

    def _obs(self, agent: str) -> np.ndarray:
        if self._role(agent) == "hunter":
            return np.array([self.noise[agent], self.t / self.episode_len, 1.0], dtype=np.float32)
        return np.array([self.noise[agent], min(self.age[agent], 10) / 10], dtype=np.float32)

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        self.away = {}
        self.age = {a: 0 for a in self.agents}
        self.noise = {a: float(self.np_random.uniform(-1, 1)) for a in self.possible_agents}
        return {a: self._obs(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        rewards = {a: (float(int(actions[a]) == 2) if self._role(a) == "hunter"
                       else self.prey_reward * float(int(actions[a]) == 0)) for a in self.agents}
        draws = self.np_random.uniform(0, 1, size=len(self.possible_agents))
        delays = self.np_random.integers(1, 3, size=len(self.possible_agents))
        new_noise = self.np_random.uniform(-1, 1, size=len(self.possible_agents))
        for k, a in enumerate(self.possible_agents):
            self.noise[a] = float(new_noise[k])
        terms = {a: False for a in self.agents}
        truncs = {a: False for a in self.agents}
        obs = {}
        for k, a in enumerate(self.possible_agents):
            if a in self.agents:
                self.age[a] += 1
                terms[a] = self._role(a) == "prey" and draws[k] < self.p_die
                obs[a] = self._obs(a)
                if terms[a]:
                    self.away[a] = int(delays[k])
        if self.t >= self.episode_len:
            for a in self.agents:
                truncs[a] = not terms[a]
            self.agents = []
            return obs, rewards, terms, truncs, {a: {} for a in obs}
        self.agents = [a for a in self.agents if not terms[a]]
        for a in self.possible_agents:
            if a not in self.agents and a in self.away and a not in terms:
                self.away[a] -= 1
                if self.away[a] <= 0:
                    del self.away[a]
                    self.agents.append(a)
                    self.age[a] = 0
                    obs[a] = self._obs(a)
        self.agents.sort(key=self.possible_agents.index)
        return obs, rewards, terms, truncs, {a: {} for a in obs}

    def render(self):
        """A 3 x 32 strip per agent: bright while alive."""
        frame = np.zeros((32, 32 * len(self.possible_agents), 3), dtype=np.uint8)
        for k, a in enumerate(self.possible_agents):
            if a in self.agents:
                frame[:, 32 * k:32 * (k + 1)] = (200, 80, 80) if self._role(a) == "hunter" else (80, 200, 80)
        return frame


def make_roles(**kwargs) -> RolesEnv:
    return RolesEnv(**kwargs)


class StateRolesEnv(RolesEnv):
    """``RolesEnv`` with a global state: ``state()`` is Box(7,) float32 ``[t / episode_len, each agent's noise
    (3), each agent's age / 10 while it is there, else -1 (3)]``, a function of the env's attributes (so a
    restored env gives it again). At the env's end (t = episode_len) it reads 1 in its first entry, after the
    reset 0."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state_space = spaces.Box(-1.0, 10.0, (7,), np.float32)

    def state(self) -> np.ndarray:
        ages = [self.age[a] / 10 if a in self.agents else -1.0 for a in self.possible_agents]
        noise = [self.noise[a] for a in self.possible_agents]
        return np.array([self.t / self.episode_len, *noise, *ages], dtype=np.float32)


def make_roles_state(**kwargs) -> StateRolesEnv:
    return StateRolesEnv(**kwargs)


class TurnsEnv(ParallelEnv):
    """A turn-based ParallelEnv (``metadata["turn_based"]``) with every case of the convention.

    Players ``p0``, ``p1``, ``p2``; ``p2`` joins (waiting) at step 2. Each step a seeded draw picks who acts next:
    one player, or two at once, among those in the episode. Observation: Box(5,) float32 ``[noise, player / 3,
    own turns / 10, 1 on the agent's first turn, acted-last flag]``; action Discrete(2). An acting player gets 1
    when its action equals ``noise > 0``; every step each waiting player is paid ``bonus`` with probability 0.3
    (rewards between its turns). Any player in the episode may be terminated (probability ``p_die``, waiting or
    not), a player is truncated after ``max_age`` env steps in the episode (waiting or not, with its final
    observation), and an ended player comes back (waiting) 1-2 steps later. The env's episode ends after
    ``episode_len`` steps, every player truncated. Dynamics never depend on actions (only rewards do).
    """

    metadata = {"name": "toy_turns_v0", "render_modes": [], "turn_based": True}

    def __init__(self, p_die: float = 0.08, max_age: int = 9, episode_len: int = 23, bonus: float = 0.25):
        self.possible_agents = ["p0", "p1", "p2"]
        self.p_die, self.max_age, self.episode_len, self.bonus = p_die, max_age, episode_len, bonus
        self._obs_space = spaces.Box(-2.0, 2.0, (5,), np.float32)
        self._act_space = spaces.Discrete(2)
        self.np_random = np.random.default_rng()
        self.agents: list[str] = []
        self.t = 0
        self.age: dict[str, int] = {}
        self.turns: dict[str, int] = {}
        self.away: dict[str, int] = {}
        self.noise: dict[str, float] = {}
        self.next_actors: list[str] = []

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def _obs(self, agent: str) -> np.ndarray:
        idx = self.possible_agents.index(agent)
        return np.array([self.noise[agent], idx / 3, self.turns[agent] / 10, float(self.turns[agent] == 0),
                         float(agent in self.next_actors)], dtype=np.float32)

    state_space = spaces.Box(0.0, 3.0, (4,), np.float32)

    def state(self) -> np.ndarray:
        """The global state (PettingZoo's ``state()``): step, players in the episode, who acts next."""
        acting = [float(a in self.next_actors) for a in self.possible_agents]
        return np.array([self.t / self.episode_len, *acting], dtype=np.float32)

    def _draw_actors(self) -> None:
        live = list(self.agents)
        count = 1 if len(live) < 2 or self.np_random.random() < 0.7 else 2
        picked = self.np_random.choice(len(live), size=count, replace=False)
        self.next_actors = [live[i] for i in sorted(picked)]
        for a in self.next_actors:
            self.noise[a] = float(self.np_random.normal())

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        self.t = 0
        self.agents = ["p0", "p1"]
        self.age = {a: 0 for a in self.possible_agents}
        self.turns = {a: 0 for a in self.possible_agents}
        self.noise = {a: 0.0 for a in self.possible_agents}
        self.away = {"p2": 2}
        self._draw_actors()
        return {a: self._obs(a) for a in self.next_actors}, {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.next_actors), (sorted(actions), self.next_actors)
        rewards = {a: 0.0 for a in self.agents}
        for a, action in actions.items():
            rewards[a] = float(int(action) == int(self.noise[a] > 0))
            self.turns[a] += 1
        for a in self.agents:
            if a not in actions and self.np_random.random() < 0.3:
                rewards[a] += self.bonus
        self.t += 1
        last = self.t >= self.episode_len
        returning = []
        if not last:
            for a in list(self.away):
                self.away[a] -= 1
                if self.away[a] <= 0:
                    del self.away[a]
                    returning.append(a)
        terms, truncs, final = {}, {}, {}
        for a in list(self.agents):
            self.age[a] += 1
            term = self.np_random.random() < self.p_die
            trunc = last or self.age[a] >= self.max_age
            if term or trunc:
                terms[a], truncs[a] = term, trunc and not term
                self.next_actors = [x for x in self.next_actors if x != a]
                final[a] = self._obs(a)
                self.agents.remove(a)
                self.away[a] = 1 + int(self.np_random.integers(0, 2))
        for a in returning:  # an agent that ended at this step is away for at least the next one
            self.agents.append(a)
            self.age[a], self.turns[a] = 0, 0
        self.agents.sort()
        obs = dict(final)
        if self.agents:
            self._draw_actors()
            obs.update({a: self._obs(a) for a in self.next_actors})
        return obs, rewards, terms, truncs, {a: {} for a in self.agents}


class TurnsAEC(AECEnv):
    """A small AEC env (PettingZoo's agent-by-agent API) for the AEC adapter.

    Players ``first`` and ``second`` move in turn (``first`` starts). Observation: Box(3,) float32 ``[noise,
    player, moves / 10]`` (the noise drawn for the next move); action Discrete(2). A move that equals
    ``noise > 0`` pays the mover 1 and the other player -0.5 (a reward that arrives while it waits). After
    ``moves`` moves both are terminated; with ``truncate_second`` the second player is truncated after its second
    move instead, and ``first`` plays on alone (its dead step then comes from the adapter).
    """

    metadata = {"name": "toy_turns_aec_v0", "render_modes": [], "is_parallelizable": False}

    def __init__(self, moves: int = 7, truncate_second: bool = False):
        super().__init__()
        self.possible_agents = ["first", "second"]
        self.moves_per_game, self.truncate_second = moves, truncate_second
        self._obs_space = spaces.Box(-2.0, 2.0, (3,), np.float32)
        self._act_space = spaces.Discrete(2)
        self.np_random = np.random.default_rng()
        self.moves = 0
        self.noise = 0.0

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def observe(self, agent):
        return np.array([self.noise, float(self.possible_agents.index(agent)), self.moves / 10], dtype=np.float32)

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.rewards = {a: 0.0 for a in self.agents}
        self._cumulative_rewards = {a: 0.0 for a in self.agents}
        self.terminations = {a: False for a in self.agents}
        self.truncations = {a: False for a in self.agents}
        self.infos = {a: {} for a in self.agents}
        self.agent_selection = "first"
        self.moves = 0
        self.noise = float(self.np_random.normal())

    def step(self, action):
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        self.rewards = {a: 0.0 for a in self.agents}
        if int(action) == int(self.noise > 0):
            self.rewards[agent] = 1.0
            for other in self.agents:
                if other != agent:
                    self.rewards[other] = -0.5
        self.moves += 1
        if self.truncate_second and agent == "second" and self.moves >= 4:
            self.truncations["second"] = True
        if self.moves >= self.moves_per_game:
            self.terminations = {a: True for a in self.agents}
        live = [a for a in self.agents if not (self.terminations[a] or self.truncations[a])]
        others = [a for a in self.agents if a != agent]
        dead = [a for a in self.agents if self.terminations[a] or self.truncations[a]]
        if dead:
            self.agent_selection = dead[0]  # dead steps first, as PettingZoo's _deads_step_first
            self._skip_agent_selection = live[0] if live else None
        else:
            self.agent_selection = others[0] if others and others[0] in live else agent
        self.noise = float(self.np_random.normal())
        self._accumulate_rewards()


class FirstMoveEnv(ParallelEnv):
    """A turn-based memory game: the second mover must remember the first mover's earlier move.

    Turn 0: ``first`` sees a cue bit and moves (reward 1 to it when its move equals the cue). Turn 1: ``second``
    sees that move (the only time it sees it). Turn 2: ``first`` moves on a blank observation. Turn 3:
    ``second`` moves on a blank observation and is paid 1 when its move equals the first's turn-0 move; both are
    terminated. Observation: Box(4,) float32 ``[cue or seen move (+1 / -1, else 0), is second, turn / 3, 1]``;
    action Discrete(2). A memoryless second mover scores 0.5 at turn 3, one that remembers 1.
    """

    metadata = {"name": "toy_first_move_v0", "render_modes": [], "turn_based": True}

    def __init__(self):
        self.possible_agents = ["first", "second"]
        self._obs_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self._act_space = spaces.Discrete(2)
        self.np_random = np.random.default_rng()
        self.agents: list[str] = []
        self.turn = 0
        self.cue = 0
        self.move = 0  # the first mover's turn-0 move

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def _obs(self, signal: float) -> np.ndarray:
        return np.array([signal, float(self.turn % 2), self.turn / 3, 1.0], dtype=np.float32)

    state_space = spaces.Box(0.0, 1.0, (3,), np.float32)

    def state(self) -> np.ndarray:
        return np.array([self.cue, self.move, self.turn / 3], dtype=np.float32)

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.turn = 0
        self.cue = int(self.np_random.integers(0, 2))
        return {"first": self._obs(2.0 * self.cue - 1)}, {a: {} for a in self.agents}

    def step(self, actions):
        rewards = {a: 0.0 for a in self.agents}
        action = int(next(iter(actions.values())))
        if self.turn == 0:
            self.move = action
            rewards["first"] = float(action == self.cue)
        if self.turn == 3:
            rewards["second"] = float(action == self.move)
            terms = {a: True for a in self.agents}
            final = {"first": self._obs(0.0), "second": self._obs(0.0)}
            self.agents = []
            return final, rewards, terms, {a: False for a in terms}, {}
        self.turn += 1
        mover = self.possible_agents[self.turn % 2]
        signal = 2.0 * self.move - 1 if self.turn == 1 else 0.0
        return ({mover: self._obs(signal)}, rewards, {a: False for a in self.agents},
                {a: False for a in self.agents}, {a: {} for a in self.agents})


class TurnsDuelEnv(FirstMoveEnv):
    """``FirstMoveEnv`` as a zero-sum two-sided game for self-play: at turn 3 the second mover gets +1 for
    matching the first's turn-0 move, and the first gets -1 for it (paid while it waits)."""

    metadata = {"name": "toy_turns_duel_v0", "render_modes": [], "turn_based": True}

    def step(self, actions):
        obs, rewards, terms, truncs, infos = super().step(actions)
        if "second" in rewards and rewards["second"] > 0:
            rewards["first"] = rewards.get("first", 0.0) - rewards["second"]
        return obs, rewards, terms, truncs, infos


class ForgotFlagEnv(FirstMoveEnv):
    """``FirstMoveEnv`` without ``metadata["turn_based"]``: it omits a listed agent's observation."""

    metadata = {"name": "toy_forgot_flag_v0", "render_modes": []}


def make_turns(**kwargs) -> TurnsEnv:
    return TurnsEnv(**kwargs)


def make_turns_aec(**kwargs) -> TurnsAEC:
    return TurnsAEC(**kwargs)


def make_first_move(**kwargs) -> FirstMoveEnv:
    return FirstMoveEnv(**kwargs)


def make_turns_duel(**kwargs) -> TurnsDuelEnv:
    return TurnsDuelEnv(**kwargs)


def make_forgot_flag() -> ForgotFlagEnv:
    return ForgotFlagEnv()


def make_tictactoe():
    from pettingzoo.classic import tictactoe_v3

    return tictactoe_v3.env()
