"""The KMC's vending-key store: supply groups, vending keys, key authorisations, two-person approvals.

Key material is generated here from the OS CSPRNG and kept only sealed by the KMC key store
(`kmc.keystore`); everything shown to people carries the key check value instead. See docs/keys.md.
"""
