"""``python -m losskit`` runs the command-line interface."""

from losskit.cli import main

raise SystemExit(main())
