"""RFC 9162 §2.1 Merkle tree hashing, inclusion and consistency proofs (0-based indexes).

Everything is written against one primitive, `perfect(level, index)`: the hash of the perfect
subtree holding leaves [index·2^level, (index+1)·2^level). Any store that can answer it (a list
of leaves in memory, the database's stored nodes, a tiles directory) gets roots and proofs from
the same code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Perfect = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof or hash that does not verify; the message says why."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_hash(perfect: Perfect, start: int, end: int) -> bytes:
    """MTH of leaves [start, end), built from perfect subtrees (start is aligned as in RFC)."""
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return perfect(level, start >> level)
    k = _split(n)
    return node_hash(range_hash(perfect, start, start + k), range_hash(perfect, start + k, end))


def root(perfect: Perfect, size: int) -> bytes:
    return range_hash(perfect, 0, size)


def inclusion_proof(perfect: Perfect, index: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]), bottom-up."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            path.append(range_hash(perfect, start + k, end))
            end = start + k
        else:
            path.append(range_hash(perfect, start, start + k))
            start, m = start + k, m - k
    return path[::-1]


def consistency_proof(perfect: Perfect, old: int, new: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(m, D[n]) for 0 < m <= n (empty when m == n)."""
    if not 0 < old <= new:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    proof: list[bytes] = []
    start, end, m, complete = 0, new, old, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(range_hash(perfect, start + k, end))
            end = start + k
        else:
            proof.append(range_hash(perfect, start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:
        proof.append(range_hash(perfect, start, end))
    return proof[::-1]


def _check_len(h: bytes, what: str) -> None:
    if len(h) != HASH_SIZE:
        raise ProofError(f"{what} is {len(h)} bytes, not {HASH_SIZE}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root implied by an inclusion proof."""
    _check_len(leaf, "leaf hash")
    if index >= size or index < 0:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_len(p, "proof hash")
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> None:
    _check_len(expected_root, "root")
    if root_from_inclusion(index, size, leaf, proof) != expected_root:
        raise ProofError(
            f"inclusion proof for leaf {index} does not lead to the root of size {size}"
        )


def verify_consistency(
    old: int,
    new: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
    *,
    allow_empty_old: bool = False,
) -> None:
    """RFC 9162 §2.1.4.2. From size 0 only with `allow_empty_old` (the witness protocol)."""
    if old > new:
        raise ProofError(f"old size {old} is larger than new size {new}")
    if old == 0:
        if not allow_empty_old:
            raise ProofError("a consistency proof from the empty tree is meaningless")
        if proof:
            raise ProofError("a consistency proof from size 0 must be empty")
        return
    if old == new:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for size {old}")
        return
    _check_len(old_root, "old root")
    _check_len(new_root, "new root")
    for p in proof:
        _check_len(p, "proof hash")
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root:
        raise ProofError(f"consistency proof does not lead to the old root (size {old})")
    if sr != new_root:
        raise ProofError(f"consistency proof does not lead to the new root (size {new})")


def memory_perfect(leaves: Sequence[bytes]) -> Perfect:
    """A `perfect` source over leaf hashes held in memory (memoised)."""
    cache: dict[tuple[int, int], bytes] = {}

    def perfect(level: int, index: int) -> bytes:
        if level == 0:
            return leaves[index]
        key = (level, index)
        if key not in cache:
            cache[key] = node_hash(perfect(level - 1, 2 * index), perfect(level - 1, 2 * index + 1))
        return cache[key]

    return perfect


class CompactRange:
    """The right border of a tree: hashes of the perfect subtrees that make up [0, size).

    Appending a leaf completes perfect subtrees bottom-up; `append` returns each completed
    (level, index, hash) so a store can persist them.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != bin(size).count("1"):
            raise ValueError("compact range does not match its size")
        self.size = size
        self.hashes = list(hashes)  # largest (leftmost) subtree first

    def append(self, leaf: bytes, min_level: int = 0) -> list[tuple[int, int, bytes]]:
        """Add a leaf; return the perfect subtrees it completed from `min_level` up."""
        completed = [(0, self.size, leaf)] if min_level == 0 else []
        h, level, idx = leaf, 0, self.size
        hashes = self.hashes
        while idx & 1:
            h = node_hash(hashes.pop(), h)
            level += 1
            idx >>= 1
            if level >= min_level:
                completed.append((level, idx, h))
        hashes.append(h)
        self.size += 1
        return completed

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactRange:
        return cls(size, [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)])


def is_valid_subtree(start: int, end: int) -> bool:
    """[start, end) is a subtree when start is a multiple of BIT_CEIL(end - start)
    (draft-ietf-plants-merkle-tree-certs §4.1)."""
    if not 0 <= start < end:
        return False
    size = end - start
    ceil = 1 << (size - 1).bit_length()
    return start % ceil == 0


def verify_subtree_inclusion(
    index: int, start: int, end: int, leaf: bytes, proof: Sequence[bytes], subtree_root: bytes
) -> None:
    """Inclusion of leaf `index` in the subtree [start, end) whose hash is `subtree_root`:
    an RFC 9162 inclusion proof within the subtree, which is a tree of end - start leaves."""
    if not is_valid_subtree(start, end):
        raise ProofError(f"[{start}, {end}) is not a valid subtree")
    if not start <= index < end:
        raise ProofError(f"leaf {index} is outside the subtree [{start}, {end})")
    verify_inclusion(index - start, end - start, leaf, proof, subtree_root)


def _subtree_proof_ranges(start: int, end: int, n: int) -> tuple[list[tuple[int, int]], bool]:
    """The ranges whose hashes form a subtree consistency proof, in proof order, and whether
    the subtree stayed whole (a node of the tree) rather than split into pieces.

    The RFC 9162 consistency recursion generalised from [0, m) to a subtree [start, end): go
    left while the subtree lies in the left part, right (adding the left part) while it lies in
    the right part, and when it straddles the split (only possible with start == 0) continue
    with its right piece, which from then on is no longer a node the verifier knows.
    """
    ranges: list[tuple[int, int]] = []
    lo, hi, known = 0, n, True  # current range [lo, hi); is the subtree part still known?
    s, e = start, end
    while not (s == lo and e == hi):
        k = _split(hi - lo)
        mid = lo + k
        if e <= mid:
            ranges.append((mid, hi))
            hi = mid
        elif s >= mid:
            ranges.append((lo, mid))
            lo = mid
        else:
            ranges.append((lo, mid))
            lo, s, known = mid, mid, False
    if not known:
        ranges.append((lo, hi))
    return ranges[::-1], known


def subtree_consistency_proof(perfect: Perfect, start: int, end: int, n: int) -> list[bytes]:
    """A subtree consistency proof for [start, end) in the tree of size n."""
    if not is_valid_subtree(start, end) or end > n:
        raise ProofError(f"[{start}, {end}) is not a valid subtree of a tree of size {n}")
    return [range_hash(perfect, a, b) for a, b in _subtree_proof_ranges(start, end, n)[0]]


def verify_subtree_consistency(
    start: int, end: int, n: int, proof: Sequence[bytes], subtree_root: bytes, root: bytes
) -> None:
    """The subtree [start, end) with hash `subtree_root` is part of the tree of size `n` with
    hash `root` (draft-ietf-plants-merkle-tree-certs subtree consistency)."""
    if start == end and 0 <= start <= n:  # the empty subtree: only the empty hash, no proof
        if proof or subtree_root != EMPTY_ROOT:
            raise ProofError("an empty subtree has the empty hash and no proof")
        return
    if start == 0 and end == n and n > 0:  # the whole tree: the same hash, no proof
        if proof or subtree_root != root:
            raise ProofError("a subtree that is the whole tree must equal its root")
        return
    if not is_valid_subtree(start, end) or end > n:
        raise ProofError(f"[{start}, {end}) is not a valid subtree of a tree of size {n}")
    for h in (subtree_root, root, *proof):
        _check_len(h, "hash")
    ranges, whole = _subtree_proof_ranges(start, end, n)
    if len(ranges) != len(proof):
        raise ProofError(
            f"a subtree consistency proof for [{start}, {end}) in size {n} has "
            f"{len(ranges)} hashes, not {len(proof)}"
        )
    known = dict(zip(ranges, proof, strict=True))
    if whole:  # the subtree is a node of the tree: its hash is an input, not recomputed
        known[(start, end)] = subtree_root

    def compose(a: int, b: int) -> bytes:
        if (a, b) in known:
            return known[(a, b)]
        if b - a <= 1:
            raise ProofError("the proof does not cover the tree")
        k = _split(b - a)
        return node_hash(compose(a, a + k), compose(a + k, b))

    if compose(start, end) != subtree_root:
        raise ProofError("the proof does not lead to the subtree's hash")
    if compose(0, n) != root:
        raise ProofError("the proof does not lead to the tree's root")
