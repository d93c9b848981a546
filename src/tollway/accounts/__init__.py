"""Users, projects and memberships: the tenancy model of CONTRACT §1."""
