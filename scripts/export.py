"""Export a trained run: `python scripts/export.py saved_models/<run>`, the same as `tfvae-export`.

The tool is tfvae/cli/export.py; `--help` lists its flags.
"""

import sys

from tfvae.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
