"""People and machine clients of the KMC: accounts, roles, passwords and API tokens."""
