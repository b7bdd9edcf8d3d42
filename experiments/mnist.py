"""The seed tutorials' MNIST optimizer study: ``python3 experiments/mnist.py --help``.

The command line is :mod:`jaxmom.studies.mnist.cli`; the study is the ``jaxmom.studies.mnist``
package (registry and config, data, model, training, checkpoints, sweep, report).
"""

import os
import sys
from pathlib import Path

try:
    try:
        import jaxmom  # noqa: F401
    except ImportError:  # run from a checkout without `pip install -e .`
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    from jaxmom.studies.mnist.cli import run
except KeyboardInterrupt:  # Ctrl-C while JAX imports: one line and 130, as during training
    print("mnist.py: interrupted", file=sys.stderr)
    sys.stderr.flush()
    os._exit(130)

if __name__ == "__main__":
    run()
