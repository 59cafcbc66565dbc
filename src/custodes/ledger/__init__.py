"""The ledger: custodes' RFC 9162 Merkle log in the store, with its signed checkpoints, tiles,
proofs, cosignatures and anchors.

The formats and protocols it stands on (trees and proofs, signed notes, tiles, the witness and
its HTTP client) are `custodes.tlog`, which knows nothing of the store.
"""
