"""SQLAlchemy models and the session factory. Migrations live in ``migrations/`` (Alembic)."""
