"""Factories shared by the tests and the benchmarks: CSRs, SMs, vending keys, PKI, a mini KMC.

Not part of the wheel (pyproject lists the shipped packages); importable from the repository
root, where pytest and `python -m bench` run. Nothing here imports `tests`.

- `factories.csr`: SM registration requests (fresh P-384 keys, `key_load_protocol.csr.build_csr`)
- `factories.pki`: the key-load protocol's test PKI (root, key-load signers, SM certificates)
- `factories.example`: the fixed messages of the worked example in docs/protocol.md
- `factories.forgery`: EKLFs signed by any key, for the refusal tests
- `factories.emulator`: a mini KMC (no Flask, no database) for the SM emulator
- `factories.registry`: manufacturers and SMs registered and approved in a KMC app
- `factories.keys`: vending keys and authorisations in a KMC app, and API tokens to load them
"""
