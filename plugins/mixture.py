"""Bundled losskit plugin `mixture` (losses land with their issue)."""

import losskit


@losskit.hookimpl
def register_losses(register):
    """Register this plugin's losses."""
