"""Check the PPO math against sb3-contrib's RecurrentPPO on the same data and the same weights.

Run it with a Python that has sb3-contrib installed (the project's own packages
are imported from this checkout):

    /path/to/venv-with-sb3-contrib/bin/python benchmarks/sb3_equivalence.py

It builds sb3-contrib's RecurrentPPO for CartPole without velocities (the
benchmark's zoo settings), collects a few rollouts with it, then

1. copies its weights into a mnemo ``RecurrentActorCritic``, recomputes the
   stored log-probabilities and values along mnemo's sequences (cut at episode
   starts and every ``bptt_len`` steps, stored start states, fused calls), and
   recomputes the advantages with mnemo's GAE;
2. runs one epoch of each implementation's update on the same rollout and
   compares the gradients each hands to its optimizer (after clipping).

sb3's value loss is ``vf_coef * mse`` while mnemo's is ``vf_coef * 0.5 * mse``
(CleanRL's convention), so mnemo runs with twice sb3's ``vf_coef``; the script
prints the differences, which should be at float rounding.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "shared" / "peers"))

from sb3_contrib import RecurrentPPO  # noqa: E402
from sb3_recurrent_ppo import NoVelocity  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

from agents.config import PolicyConfig, PPOConfig  # noqa: E402
from agents.model.policy import RecurrentActorCritic  # noqa: E402
from agents.rollout.buffer import RolloutBuffer, compute_gae, gather_sequences, make_sequences  # noqa: E402
from agents.train.ppo import ppo_update  # noqa: E402

NAMES = {"mlp_extractor.policy_net.0": "actor_mlp.0", "mlp_extractor.value_net.0": "critic_mlp.0",
         "action_net": "action_head.linear", "value_net": "value_head", "lstm_actor": "actor_core.rnn",
         "lstm_critic": "critic_core.rnn"}


def mnemo_name(sb3_name: str) -> str:
    for prefix, ours in NAMES.items():
        if sb3_name.startswith(prefix + "."):
            return ours + sb3_name[len(prefix):]
    raise KeyError(sb3_name)


def main() -> None:
    torch.set_num_threads(1)
    env = make_vec_env(lambda: NoVelocity(gym.make("CartPole-v1")), n_envs=8, seed=0)
    model = RecurrentPPO(
        "MlpLstmPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=1, ent_coef=0.0,
        learning_rate=1e-3, clip_range=0.2, seed=0, verbose=0,
        policy_kwargs=dict(ortho_init=False, activation_fn=torch.nn.ReLU, lstm_hidden_size=64,
                           enable_critic_lstm=True, net_arch=dict(pi=[64], vf=[64])))
    _, callback = model._setup_learn(10_000, None)
    callback.on_training_start(locals(), globals())
    for k in range(3):  # train a little first, so that weights and carried states are not at their start
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=32)
        if k < 2:
            model.train()
    rb = model.rollout_buffer
    obs_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    policy = RecurrentActorCritic(obs_space, spaces.Discrete(2), PolicyConfig(
        hidden_size=64, separate_critic=True, encoder_sizes=(), head_sizes=(64,), activation="relu", ortho_init=False))
    policy.load_state_dict({mnemo_name(k): v for k, v in model.policy.state_dict().items()})

    buf = RolloutBuffer(32, 8, obs_space, (), torch.int64, policy.state_shape, torch.device("cpu"))
    buf.obs.copy_(torch.as_tensor(rb.observations))
    buf.actions.copy_(torch.as_tensor(rb.actions[..., 0]).long())
    buf.episode_starts.copy_(torch.as_tensor(rb.episode_starts))
    buf.logprobs.copy_(torch.as_tensor(rb.log_probs))
    buf.values.copy_(torch.as_tensor(rb.values))
    buf.states.copy_(torch.stack([torch.as_tensor(getattr(rb, n)) for n in
                                  ("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf")], dim=1))
    seqs = make_sequences(buf.episode_starts.numpy(), 32, cut_at_episode_starts=True)
    # GAE: sb3 folds V(final obs) of truncated episodes into the reward and marks every episode end
    # done; mnemo's compute_gae sees the same when those ends are passed as terminations.
    buf.rewards.copy_(torch.as_tensor(rb.rewards))
    last_start = torch.as_tensor(model._last_episode_starts, dtype=torch.float32)
    buf.terminated[:-1] = buf.episode_starts[1:]
    buf.terminated[-1] = last_start
    last_state = torch.cat([torch.stack(model._last_lstm_states.pi), torch.stack(model._last_lstm_states.vf)])
    with torch.no_grad():
        last_value = policy.value(torch.as_tensor(model._last_obs).float(), last_state, last_start)
    advantages, returns = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated,
                                      buf.truncation_values, last_value, model.gamma, model.gae_lambda)
    print(f"GAE vs sb3's: max |advantage diff| {(advantages - torch.as_tensor(rb.advantages)).abs().max():.2e}")
    batch = gather_sequences(buf, seqs, advantages, returns)
    with torch.no_grad():
        logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions)
    real = batch.mask.bool()
    print(f"recomputed vs sb3's stored: max |logprob diff| {(logprob[real] - batch.logprobs[real]).abs().max():.2e}, "
          f"max |value diff| {(value[real] - batch.values[real]).abs().max():.2e}")

    sb3_grads = record_gradients(model.policy)
    model.policy.optimizer = GradientRecorder(model.policy.parameters(), sb3_grads)
    # sb3 rotates the flattened rollout by a random offset each epoch, which cuts one sequence
    # (and its backpropagation) at a random step; offset 0 keeps the sequences mnemo builds.
    buffers_np = sys.modules["sb3_contrib.common.recurrent.buffers"].np
    randint = buffers_np.random.randint
    buffers_np.random.randint = lambda *args, **kwargs: 0
    try:
        model.train()
    finally:
        buffers_np.random.randint = randint
    ours = record_gradients(policy)
    cfg = PPOConfig(num_minibatches=1, update_epochs=1, learning_rate=1e-3, gamma=0.98, gae_lambda=0.8, ent_coef=0.0,
                    vf_coef=2 * model.vf_coef, max_grad_norm=model.max_grad_norm)
    ppo_update(policy, GradientRecorder(policy.parameters(), ours), batch, cfg, 0.2, np.random.default_rng(0))
    worst = 0.0
    for name, grad in sb3_grads.items():
        rel = float((grad - ours[mnemo_name(name)]).abs().max() / grad.abs().max().clamp_min(1e-30))
        worst = max(worst, rel)
        print(f"  {name:34s} max |grad| {grad.abs().max():.2e}   relative difference {rel:.1e}")
    print(f"one epoch on the same rollout and weights: worst relative gradient difference {worst:.1e}")


def record_gradients(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """An empty dict that GradientRecorder fills with ``module``'s gradients, by parameter name."""
    grads: dict[str, torch.Tensor] = {}
    grads["__names__"] = {id(p): n for n, p in module.named_parameters()}  # type: ignore[assignment]
    return grads


class GradientRecorder(torch.optim.SGD):
    """SGD with lr 0 that keeps a copy of the gradients it is given."""

    def __init__(self, params, store: dict):
        super().__init__(params, lr=0.0)
        self.store = store

    def step(self, closure=None):
        names = self.store.pop("__names__", None) or self.names
        self.names = names
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.store[names[id(p)]] = p.grad.detach().clone()


if __name__ == "__main__":
    main()
