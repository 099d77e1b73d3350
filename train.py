"""Train a recurrent (LSTM) PPO agent: ``python train.py [flags]``, the same as ``mnemo train [flags]``.

    python train.py                                  # the built-in T-maze with its tuned preset
    python train.py --env-id mnemo/CartPoleNoVel-v1 --total-steps 100k
    python train.py --help                           # every flag, with its default

The command line lives in ``agents/train/cli.py``.
"""

import sys

from agents.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
