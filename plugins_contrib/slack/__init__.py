"""Slack incoming-webhook alert channel. Needs nothing beyond the platform's own ``requests``."""
