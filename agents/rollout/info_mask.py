"""``InfoActionMask``: an env that gives its action mask in ``info["action_mask"]`` (as some Gymnasium envs do)
becomes a masked env in PettingZoo's layout, ``{"observation": obs, "action_mask": mask}``.

mnemo detects masks in the observation space only (``agents.spaces``, "action masks"): a policy is built before
any step, and ``info`` is not part of an observation space. Wrapping is the explicit opt-in, in the env's
factory (``gym.register(..., additional_wrappers=...)`` or a ``make`` function given to ``--env-id``):

```python
from agents.rollout.info_mask import InfoActionMask

def make(**kwargs):
    return InfoActionMask(MyEnv(**kwargs))
```

Every ``reset`` and ``step`` must then give ``info["action_mask"]`` (length n for Discrete(n), sum(nvec) for
MultiDiscrete); one that does not is refused with an ActionMaskError naming the fix. The mask is also kept in
``info``, and the final observation of an episode carries the mask that came with it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agents.spaces import ACTION_MASK_KEY, MASKED_OBSERVATION_KEY, ActionMaskError, action_mask_sizes


class InfoActionMask(gym.Wrapper):
    """Moves ``info["action_mask"]`` into the observation: ``{"observation": obs, "action_mask": int8 mask}``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.mask_length = sum(action_mask_sizes(env.action_space))
        self.observation_space = spaces.Dict({
            MASKED_OBSERVATION_KEY: env.observation_space,
            ACTION_MASK_KEY: spaces.MultiBinary(self.mask_length),
        })

    def _masked(self, obs: Any, info: dict, where: str) -> dict:
        if ACTION_MASK_KEY not in info:
            raise ActionMaskError(f"InfoActionMask: the env's {where} gave no info['{ACTION_MASK_KEY}']; give it at "
                                  f"every reset and step, or drop the wrapper.")
        mask = np.asarray(info[ACTION_MASK_KEY]).astype(np.int8).reshape(-1)
        if mask.shape != (self.mask_length,):
            raise ActionMaskError(f"InfoActionMask: info['{ACTION_MASK_KEY}'] from {where} has {mask.size} entries, "
                                  f"the action space {self.env.action_space} needs {self.mask_length}; fix the env.")
        return {MASKED_OBSERVATION_KEY: obs, ACTION_MASK_KEY: mask}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._masked(obs, info, "reset"), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._masked(obs, info, "step"), reward, terminated, truncated, info
