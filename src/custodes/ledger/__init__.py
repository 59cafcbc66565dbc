"""The ledger: an RFC 9162 Merkle log with C2SP checkpoints, tiles, proofs and witnesses.

Written by hand (about 600 lines) because no maintained Python library implements RFC 9162
consistency proofs together with C2SP signed notes, tiles and cosignatures (see
shared/LEDGER.md §5); the test vectors in shared/vectors pin every byte.
"""
