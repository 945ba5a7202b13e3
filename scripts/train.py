"""Train a VAE: `python scripts/train.py --dataset frey_face`, the same as `tfvae-train`.

The tool is tfvae/cli/train.py; `--help` lists its flags.
"""

import sys

from tfvae.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
