"""The transparency-log formats and protocols of C2SP, knowing nothing of custodes' store,
workspace or ledger events: RFC 9162 Merkle trees and proofs (tree.py), signed notes,
checkpoints and cosignatures (note.py), tiles (tiles.py), a tlog-witness server an oversight
body runs (witness.py) and the HTTP exchanges with a witness (client.py).

It imports nothing of custodes but `errors` (pinned by tests/test_architecture.py). Written by
hand because no maintained Python library implements RFC 9162 consistency proofs together with
C2SP signed notes, tiles and cosignatures (see shared/LEDGER.md §5); the test vectors in
shared/vectors pin every byte.
"""
