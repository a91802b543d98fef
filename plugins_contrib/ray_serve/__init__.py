"""Ray Serve deployment target: ``pip install 'mlplatform[ray]'``."""
