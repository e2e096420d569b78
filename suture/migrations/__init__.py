"""Alembic migrations of the audit store; ``AuditStore.upgrade`` runs them."""
