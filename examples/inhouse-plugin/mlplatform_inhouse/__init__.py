"""An example in-house mlplatform plugin, installed separately from the platform."""

__version__ = "0.1.0"
