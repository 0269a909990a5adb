"""``losskit`` CLI entry point with the trainer tests' loss registered (for subprocess tests).

Usage: ``python trainer_cli.py train ...`` or under ``torchrun``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import trainer_testloss  # noqa: E402

import losskit  # noqa: E402
from losskit.cli import main  # noqa: E402

if __name__ == "__main__":
    with losskit.temporary_plugin(trainer_testloss.Plugin(), trainer_testloss.PLUGIN):
        sys.exit(main(sys.argv[1:]))
