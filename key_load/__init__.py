"""Processing an SM's VKLOADREQ into an EKLF, and the record of every key issued to every SM.

The checks and their order are listed in docs/keys.md ("Processing a VKLOADREQ"); the wire
format is the protocol colleague's `key_load_protocol` (docs/protocol.md).
"""
