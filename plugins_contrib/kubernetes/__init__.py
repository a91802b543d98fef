"""Kubernetes deployment target: ``pip install 'mlplatform[kubernetes]'``."""
