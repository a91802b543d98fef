"""Use cases. Plain functions over a session and primitives; they raise domain errors.

A service never opens or commits a transaction: the request or the job that calls it owns it.
"""
