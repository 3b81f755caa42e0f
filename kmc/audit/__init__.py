"""Tamper-evident audit log: a hash chain of entries appended in the same transaction as the change."""
