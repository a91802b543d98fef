"""SMTP alert channel (``smtplib``, standard library only)."""
