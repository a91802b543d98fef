"""mlplatform: one portal for the model lifecycle, extensible through pluggy plugins."""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("mlplatform")
"""Marker for plugin authors: decorate hook implementations with ``@mlplatform.hookimpl``."""

__all__ = ["__version__", "hookimpl"]
