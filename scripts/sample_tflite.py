"""Sample as a phone would: `python scripts/sample_tflite.py MODEL.tflite`, the same as
`tfvae-sample`.

Runs tfvae/tflite_sampler.py loaded from its file, not as `tfvae.tflite_sampler`:
importing the tfvae package loads TensorFlow, which a device does not have. That
one file, with numpy and ai-edge-litert, is all a device needs.
"""

import importlib.util
import sys
from pathlib import Path

_SAMPLER = Path(__file__).resolve().parents[1] / "tfvae" / "tflite_sampler.py"
_spec = importlib.util.spec_from_file_location("tflite_sampler", _SAMPLER)
sampler = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sampler)
main = sampler.main

if __name__ == "__main__":
    sys.exit(main())
