"""The audit trail: who changed what, written with the change (docs/audit.md)."""
