"""Evaluate a trained run: `python scripts/evaluate.py saved_models/<run>`, the same as
`tfvae-evaluate`.

The tool is tfvae/cli/evaluate.py; `--help` lists its flags.
"""

import sys

from tfvae.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
