"""Users, projects and memberships: the tenancy model (docs/api.md)."""
