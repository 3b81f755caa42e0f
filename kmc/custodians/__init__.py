"""Custodians of a split master key: splitting it, entering shares to unseal, sealing again.

The state itself (sealed or not, the vault) is the core's (`kmc.sealing`); this feature holds the
use cases that change it, with their audit entries, and their front doors. See docs/keys.md.
"""
