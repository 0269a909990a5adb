"""Plugins bundled with losskit, each registered through the ``losskit`` entry-point group."""
