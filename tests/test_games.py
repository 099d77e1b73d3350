"""pygame games: API conformance, determinism, rendering, lazy pygame, scripted-policy sanity."""

import subprocess
import sys
import warnings
from collections import deque
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the ids)
from envs.games import DarkCatchEnv, FlickerPongEnv, FogMazeEnv
from envs.games import dark_catch as dc
from envs.games import flicker_pong as fp
from envs.games import fog_maze as fm
from envs.play import action_from_keys, play
from envs.play import main as play_main

GAMES = {"FlickerPong": FlickerPongEnv, "FogMaze": FogMazeEnv, "DarkCatch": DarkCatchEnv}
VECTOR_IDS = [f"mnemo/{name}-v0" for name in GAMES]
PIXEL_IDS = [f"mnemo/{name}Pixels-v0" for name in GAMES]
ROOT = Path(__file__).resolve().parents[1]


def rollout(env: gym.Env, seed: int, steps: int) -> tuple[list[np.ndarray], list[float]]:
    """Observations and rewards of ``steps`` random-action steps (resets included)."""
    actions = np.random.default_rng(seed).integers(env.action_space.n, size=steps)
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(int(action))
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
            observations.append(obs)
    return observations, rewards


# ------------------------------------------------------------------ API


@pytest.mark.parametrize("env_id", VECTOR_IDS + PIXEL_IDS)
def test_check_env_without_warnings(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(env_id).unwrapped)  # all render modes are checked through the spec


@pytest.mark.parametrize("env_id", VECTOR_IDS + PIXEL_IDS)
def test_same_seed_same_rollout(env_id):
    obs_a, rew_a = rollout(gym.make(env_id), seed=3, steps=300)
    obs_b, rew_b = rollout(gym.make(env_id), seed=3, steps=300)
    obs_c, _ = rollout(gym.make(env_id), seed=4, steps=300)
    assert rew_a == rew_b
    assert len(obs_a) == len(obs_b)
    assert all(np.array_equal(a, b) for a, b in zip(obs_a, obs_b, strict=True))
    assert not all(np.array_equal(a, c) for a, c in zip(obs_a, obs_c, strict=False))


@pytest.mark.parametrize("name", list(GAMES))
@pytest.mark.parametrize("grayscale", [False, True])
def test_pixel_observations(name, grayscale):
    env = gym.make(f"mnemo/{name}Pixels-v0", grayscale=grayscale, obs_size=36)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (36, 36, 1 if grayscale else 3)
    assert obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    for _ in range(20):
        obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)


@pytest.mark.parametrize("name", list(GAMES))
@pytest.mark.parametrize("reveal", [True, False])
def test_rgb_array_render_is_an_image(name, reveal):
    env = gym.make(f"mnemo/{name}-v0", render_mode="rgb_array", render_reveal=reveal)
    env.reset(seed=0)
    for _ in range(5):
        env.step(env.action_space.sample())
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    assert min(frame.shape[:2]) >= 256
    assert frame.std() > 0  # something was drawn
    env.close()
    env.close()


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (FlickerPongEnv, {"flicker_p": 1.5}, "flicker_p"),
        (FlickerPongEnv, {"flicker_p": -0.1}, "flicker_p"),
        (FlickerPongEnv, {"points_to_win": 0}, "points_to_win"),
        (FlickerPongEnv, {"opponent": "human"}, "opponent"),
        (FlickerPongEnv, {"obs_mode": "rgb"}, "obs_mode"),
        (FlickerPongEnv, {"obs_size": -48}, "obs_size"),
        (FlickerPongEnv, {"render_mode": "ansi"}, "render_mode"),
        (FogMazeEnv, {"size": 2}, "size"),
        (FogMazeEnv, {"view_radius": 0}, "view_radius"),
        (FogMazeEnv, {"n_goals": 5}, "n_goals"),
        (FogMazeEnv, {"wall_density": 0.9}, "wall_density"),
        (FogMazeEnv, {"cue_steps": 0}, "cue_steps"),
        (FogMazeEnv, {"obs_mode": "pixels", "obs_size": 8}, "obs_size"),
        (FogMazeEnv, {"step_penalty": -1.0}, "step_penalty"),
        (DarkCatchEnv, {"n_balls": 0}, "n_balls"),
        (DarkCatchEnv, {"visible_steps": 0}, "visible_steps"),
        (DarkCatchEnv, {"visible_steps": 30, "fall_steps": 20}, "visible_steps"),
        (DarkCatchEnv, {"max_vx": -0.01}, "max_vx"),
        (DarkCatchEnv, {"paddle_speed": 0.0}, "paddle_speed"),
        (DarkCatchEnv, {"max_vx": float("nan")}, "max_vx"),
        (DarkCatchEnv, {"obs_size": 4}, "obs_size"),
        (DarkCatchEnv, {"grayscale": "yes"}, "grayscale"),
    ],
)
def test_bad_arguments_raise(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_vector_and_pixel_modes_never_import_pygame():
    code = (
        "import sys, gymnasium as gym, envs\n"
        f"for env_id in {VECTOR_IDS + PIXEL_IDS!r}:\n"
        "    env = gym.make(env_id)\n"
        "    env.reset(seed=0)\n"
        "    for _ in range(50):\n"
        "        env.step(env.action_space.sample())\n"
        "    env.close()\n"
        "assert 'pygame' not in sys.modules, 'pygame was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------- FlickerPong


def tracking_paddle(obs: np.ndarray) -> int:
    """Follow the ball's height (vector obs scale: one paddle step is 0.08)."""
    ball_y, paddle_y = obs[2], obs[3]
    if ball_y < paddle_y - 0.04:
        return fp.UP
    if ball_y > paddle_y + 0.04:
        return fp.DOWN
    return fp.NOOP


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pong_tracking_paddle_wins_without_flicker(seed):
    env = gym.make("mnemo/FlickerPong-v0", flicker_p=0.0)
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(tracking_paddle(obs))
        assert reward > -1.0, "a paddle that sees the ball never misses it"
        total += reward
        done = terminated or truncated
    assert terminated and info["score"] == (3, 0)
    assert total > 3.0  # three points and some returns


def test_pong_flicker_blanks_frames_at_rate_p():
    for p, low, high in [(0.0, 1.0, 1.0), (0.5, 0.45, 0.55), (1.0, 0.0, 0.0)]:
        env = gym.make("mnemo/FlickerPong-v0", flicker_p=p)
        env.reset(seed=0)
        shown = []
        for _ in range(2000):
            obs, _, terminated, truncated, info = env.step(env.action_space.sample())
            assert (obs[0] == 1.0) == info["visible"]
            if not info["visible"]:
                assert not obs.any()
            shown.append(info["visible"])
            if terminated or truncated:
                env.reset()
        assert low <= np.mean(shown) <= high


def test_pong_blank_pixel_frame_is_black():
    env = gym.make("mnemo/FlickerPongPixels-v0", flicker_p=1.0)
    obs, _ = env.reset(seed=0)
    assert not obs.any()
    env = gym.make("mnemo/FlickerPongPixels-v0", flicker_p=0.0)
    obs, _ = env.reset(seed=0)
    assert obs.min() > 0  # the court has a color: a blank frame is told apart


def test_pong_external_opponent_follows_its_action():
    env = FlickerPongEnv(opponent="external", flicker_p=0.0)
    env.reset(seed=0)
    env.set_opponent_action(fp.UP)
    for _ in range(30):
        env.step(fp.NOOP)
    assert env.state.opponent_y == pytest.approx(env.params.paddle_h / 2)  # pinned to the top
    env.set_opponent_action(fp.DOWN)
    env.step(fp.NOOP)
    assert env.state.opponent_y == pytest.approx(env.params.paddle_h / 2 + env.params.paddle_speed)
    with pytest.raises(ValueError, match="external"):
        FlickerPongEnv().set_opponent_action(fp.UP)


def test_pong_two_player_step_and_mirror():
    params = fp.PongParams(flicker_p=0.0)
    rng = np.random.default_rng(0)
    state = fp.reset_state(rng, params)
    assert fp.mirror(fp.mirror(state)) == state
    moved, _, _ = fp.step_state(state, fp.DOWN, rng, params, opponent_action=fp.UP)
    assert moved.agent_y > state.agent_y and moved.opponent_y < state.opponent_y
    assert state.agent_y == 0.5  # the input state is not modified


# -------------------------------------------------------------- FogMaze


def shortest_path_action(state: fm.MazeState, params: fm.MazeParams, target: tuple[int, int]) -> int:
    """First action of a shortest path to ``target`` that opens no other chest (reads the true map)."""
    r = params.view_radius
    start = (state.row, state.col)
    first: dict[tuple[int, int], int | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == target:
            return first[cell]
        for action, (dr, dc_) in enumerate(fm._MOVES):
            nxt = (cell[0] + dr, cell[1] + dc_)
            code = state.cells[nxt[0] + r, nxt[1] + r]
            if nxt in first or code == fm.WALL or (code == fm.CHEST and nxt != target):
                continue
            first[nxt] = action if first[cell] is None else first[cell]
            queue.append(nxt)
    raise AssertionError("target unreachable")


def test_maze_cue_only_at_start_and_remembering_it_finds_the_treasure():
    env = gym.make("mnemo/FogMaze-v0")
    game = env.unwrapped
    n = 2 * 25
    returns = []
    for episode in range(40):
        obs, info = env.reset(seed=episode)
        cue = int(np.argmax(obs[n:]))  # the remembered cue: the only use of the goal
        assert obs[n:].sum() == 1 and cue == info["goal"]
        target = game.params.corners()[cue]
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(shortest_path_action(game.state, game.params, target))
            assert not obs[n:].any()  # the cue is gone after the first observation
            total += reward
            done = terminated or truncated
        assert terminated and reward == 1.0  # the treasure, every time
        returns.append(total)
    assert max(returns) == pytest.approx(0.95)  # six steps when no wall is in the way
    assert min(returns) > 0.8


def test_maze_wrong_chest_costs_and_walls_block():
    params = fm.MazeParams(wall_density=0.0)
    rng = np.random.default_rng(0)
    state = fm.reset_state(rng, params)
    wrong = (state.goal + 1) % params.n_goals
    total, done = 0.0, False
    while not done:
        state, reward, done = fm.step_state(
            state, shortest_path_action(state, params, params.corners()[wrong]), rng, params
        )
        total += reward
    assert reward == -1.0 and total == pytest.approx(-1.0 - 5 * 0.01)
    state = fm.reset_state(rng, params)
    for _ in range(10):  # walk into the top wall: stays put on row 0
        state, reward, done = fm.step_state(state, fm.UP, rng, params)
    assert state.row == 0 and not done and reward == -0.01


def test_maze_pixel_view_shows_cue_then_hides_it():
    env = gym.make("mnemo/FogMazePixels-v0", obs_size=40)
    obs, info = env.reset(seed=1)
    white = np.array([255, 255, 255], dtype=np.uint8)
    corner = {0: obs[0, 0], 1: obs[0, -1], 2: obs[-1, -1], 3: obs[-1, 0]}
    assert np.array_equal(corner[info["goal"]], white)
    assert sum(np.array_equal(c, white) for c in corner.values()) == 1
    cell = 40 // 5  # the 5x5 window in 8-pixel cells; the cue fills the corner cell
    rows = slice(0, cell) if info["goal"] in (0, 1) else slice(40 - cell, 40)
    cols = slice(0, cell) if info["goal"] in (0, 3) else slice(40 - cell, 40)
    assert (obs[rows, cols] == white).all() and (obs == 255).all(axis=-1).sum() == cell * cell
    obs, *_ = env.step(fm.UP)
    assert not (obs == 255).all(axis=-1).any()


# ------------------------------------------------------------ DarkCatch


def landing_x(x: float, vx: float, steps: int) -> float:
    for _ in range(steps):
        x += vx
        if x < dc.BALL_R:
            x, vx = 2 * dc.BALL_R - x, -vx
        elif x > 1.0 - dc.BALL_R:
            x, vx = 2 * (1.0 - dc.BALL_R) - x, -vx
    return x


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"max_vx": 0.035, "visible_steps": 3}],
    ids=["straight-fall", "drift-and-bounce"],
)
def test_catch_memory_policy_catches_everything_and_memoryless_does_not(kwargs):
    env = gym.make("mnemo/DarkCatch-v0", **kwargs)
    params = env.unwrapped.params
    needed = 1 if params.max_vx == 0 else 2  # shown positions needed to know the landing point

    def remembering(seed):
        """Remembers the first shown position(s) of each ball and steers to where it lands."""
        obs, _ = env.reset(seed=seed)
        total, done, seen, target = 0.0, False, [], 0.5
        while not done:
            if obs[0] == 1.0 and len(seen) < needed:
                seen.append((obs[1] + 1) / 2)
                if len(seen) == needed:
                    vx = seen[1] - seen[0] if needed == 2 else 0.0
                    target = landing_x(seen[-1], vx, params.fall_steps - (needed - 1))
            paddle = (obs[3] + 1) / 2
            action = dc.LEFT if target < paddle - 0.035 else dc.RIGHT if target > paddle + 0.035 else dc.STAY
            obs, reward, done, _, _ = env.step(action)
            if reward != 0:
                seen = []
            total += reward
        return total

    assert [remembering(seed) for seed in range(10)] == [5.0] * 10

    def staying(seed):
        env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            _, reward, done, _, _ = env.step(dc.STAY)
            total += reward
        return total

    assert np.mean([staying(seed) for seed in range(10)]) < 0


def test_catch_pixel_id_shows_each_ball_in_two_frames():
    env = gym.make("mnemo/DarkCatchPixels-v0")
    ball = np.array(dc._COLORS["ball"], dtype=np.uint8)
    obs, _ = env.reset(seed=1)
    shown = [bool((obs == ball).all(axis=-1).any())]
    for _ in range(21):
        obs, *_ = env.step(dc.STAY)
        shown.append(bool((obs == ball).all(axis=-1).any()))
    assert shown[:3] == [True, True, False]
    assert not any(shown[3:20])
    assert shown[20:22] == [True, True]  # the next ball


def test_catch_balls_fall_straight_by_default():
    env = gym.make("mnemo/DarkCatch-v0", visible_steps=20)
    obs, _ = env.reset(seed=3)
    xs = [obs[1]]
    for _ in range(19):
        obs, *_ = env.step(dc.RIGHT)
        xs.append(obs[1])
    assert len(set(xs)) == 1


def test_catch_ball_hidden_after_visible_steps():
    env = gym.make("mnemo/DarkCatch-v0", visible_steps=3)
    obs, _ = env.reset(seed=0)
    shown = [obs[0]]
    for _ in range(dc.CatchParams().fall_steps * 2):
        obs, *_ = env.step(dc.STAY)
        shown.append(obs[0])
        if obs[0] == 0.0:
            assert obs[1] == 0.0 and obs[2] == 0.0
    assert shown[:4] == [1.0, 1.0, 1.0, 0.0]
    assert shown[20:24] == [1.0, 1.0, 1.0, 0.0]  # the next ball drops right after the first lands
    assert env.unwrapped.state.drop == 2


# ------------------------------------------------------------- keyboard


def test_keys_to_action_maps_to_valid_actions():
    for cls in GAMES.values():
        for combo, action in cls.KEYS_TO_ACTION.items():
            assert isinstance(combo, tuple) and all(isinstance(k, str) for k in combo)
            assert cls().action_space.contains(action)
        codes = cls().get_keys_to_action()
        assert all(isinstance(k, int) for combo in codes for k in combo)


def test_action_from_keys():
    keys = FlickerPongEnv.KEYS_TO_ACTION
    assert action_from_keys(set(), keys, fp.NOOP) == fp.NOOP
    assert action_from_keys({"w"}, keys, fp.NOOP) == fp.UP
    assert action_from_keys({"down", "s"}, keys, fp.NOOP) == fp.DOWN
    assert action_from_keys({"up", "down"}, keys, fp.NOOP) == fp.NOOP  # opposite keys cancel
    assert action_from_keys({"x"}, FogMazeEnv.KEYS_TO_ACTION, None) is None


def test_play_steps_on_key_presses_and_quits_on_escape(monkeypatch):
    from envs.games.window import import_pygame

    pygame = import_pygame()
    script = [
        [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_UP)],
        [],
        [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE)],
    ]
    steps = []
    real_step = FogMazeEnv.step
    monkeypatch.setattr(pygame.event, "get", lambda: script.pop(0) if script else [])
    monkeypatch.setattr(FogMazeEnv, "step", lambda self, a: steps.append(a) or real_step(self, a))
    assert play("mnemo/FogMaze-v0", seed=0) == []
    assert steps == [fm.UP]


def test_missing_or_broken_pygame_is_explained(monkeypatch, capsys):
    from envs.games.window import PygameMissingError, import_pygame

    monkeypatch.setitem(sys.modules, "pygame", None)  # neither pygame nor pygame-ce installed
    with pytest.raises(PygameMissingError, match="pip install pygame") as missing:
        import_pygame()
    assert "pygame-ce works too" in str(missing.value)
    env = gym.make("mnemo/FlickerPong-v0", render_mode="rgb_array")
    env.reset(seed=0)
    with pytest.raises(PygameMissingError):
        env.render()
    env.close()
    with pytest.raises(SystemExit) as exit_info:
        play_main(["mnemo/FogMaze-v0"])
    assert exit_info.value.code == 2 and "pip install pygame" in capsys.readouterr().err
    monkeypatch.undo()

    real_import = __import__

    def broken_import(name, *args, **kwargs):  # installed, but a part of it fails to load
        if name == "pygame":
            raise ImportError("libSDL2-2.0.so.0: cannot open shared object file", name="pygame.base")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", broken_import)
    with pytest.raises(PygameMissingError, match="pip uninstall -y pygame pygame-ce"):
        import_pygame()


def test_rendering_survives_pygame_quit_and_init():
    """pygame.quit() frees fonts; cached ones must not be reused (that crashed the interpreter)."""
    import pygame

    env = gym.make("mnemo/FlickerPong-v0", render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().shape[2] == 3
    pygame.quit()
    pygame.init()
    assert env.render().shape[2] == 3
    env.close()


def test_play_command_without_a_display_or_with_an_unknown_id_is_a_one_line_error(monkeypatch, capsys):
    from envs.games.window import import_pygame

    pygame = import_pygame()
    # Were the window opened anyway, Esc ends the game at once instead of hanging the test.
    monkeypatch.setattr(pygame.event, "get", lambda: [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE)])
    with pytest.raises(SystemExit) as exit_info:
        play_main(["mnemo/FogMaze-v0"])  # the suite runs SDL's dummy driver: nobody would see the window
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "No display: SDL's video driver is 'dummy'" in err
    for env_id, says in (("mnemo/Nope-v0", "the keyboard games are mnemo/FlickerPong-v0"),
                         ("FogMaze-v0", "did you mean mnemo/FogMaze-v0?"),
                         ("CartPole-v1", "has no KEYS_TO_ACTION")):
        with pytest.raises(SystemExit) as exit_info:
            play_main([env_id])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and says in err and len(err.strip().splitlines()) == 1, err
