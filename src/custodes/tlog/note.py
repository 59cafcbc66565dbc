"""C2SP signed notes (https://c2sp.org/signed-note@v1.0.0), Ed25519 keys, checkpoints
(https://c2sp.org/tlog-checkpoint@v1.0.0) and cosignature/v1 (https://c2sp.org/tlog-cosignature).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from custodes.tlog.tree import HASH_SIZE

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
DASH = "\u2014 "
MAX_SIGNATURES = 100


class NoteError(ValueError):
    """A malformed note, key or checkpoint, or a signature that does not verify."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise NoteError(f"{what} is not valid base64") from None


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError("a key name must be non-empty, without spaces or '+'")


def key_id(name: str, alg: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    """A public key that verifies note signatures (Ed25519, or Ed25519 cosignature/v1)."""

    name: str
    alg: int
    public: bytes

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.alg, self.public)

    @property
    def vkey(self) -> str:
        return f"{self.name}+{self.id.hex()}+{b64(bytes([self.alg]) + self.public)}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        parts = vkey.strip().split("+", 2)  # base64 may contain '+': split twice only
        if len(parts) != 3:
            raise NoteError("a verifier key has the form name+hexid+base64")
        name, hexid, blob = parts
        _check_name(name)
        if len(hexid) != 8 or any(c not in "0123456789abcdef" for c in hexid):
            raise NoteError("a verifier key's id must be 8 lowercase hex digits")
        raw = unb64(blob, "verifier key")
        if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise NoteError("only Ed25519 (type 0x01) and cosignature/v1 (0x04) keys are supported")
        v = cls(name, raw[0], raw[1:])
        if v.id.hex() != hexid:
            raise NoteError("a verifier key's id does not match its name and key")
        return v

    def _verify_raw(self, sig: bytes, msg: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(sig, msg)
            return True
        except InvalidSignature:
            return False

    def verify(self, text: bytes, blob: bytes) -> int | None:
        """True signature check of a signature line's blob (key id already matched).

        Returns the cosignature timestamp for cosignature/v1 keys (0 for plain keys), or None
        when the signature is wrong.
        """
        if self.alg == ALG_ED25519:
            return 0 if len(blob) == 68 and self._verify_raw(blob[4:], text) else None
        if len(blob) != 4 + 8 + 64:
            return None
        (ts,) = struct.unpack(">Q", blob[4:12])
        if ts >= 1 << 63:
            return None
        msg = b"cosignature/v1\ntime " + str(ts).encode() + b"\n" + text
        return ts if self._verify_raw(blob[12:], msg) else None


class NoteSigner(Protocol):
    """What signs a note for the log: a key here (`Signer`) or in a token
    (`pkcs11.Pkcs11Signer`)."""

    def sign(self, text: bytes, timestamp: int | None = None) -> str: ...


@dataclass(frozen=True)
class Signer:
    name: str
    seed: bytes
    alg: int = ALG_ED25519

    @classmethod
    def generate(cls, name: str, alg: int = ALG_ED25519) -> Signer:
        _check_name(name)
        key = Ed25519PrivateKey.generate()
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(name, seed, alg)

    @property
    def _key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def verifier(self) -> Verifier:
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier(self.name, self.alg, public)

    def sign(self, text: bytes, timestamp: int | None = None) -> str:
        """One signature line for `text` (a note's body)."""
        vid = self.verifier.id
        if self.alg == ALG_ED25519:
            blob = vid + self._key.sign(text)
        else:
            if timestamp is None:
                raise ValueError("a cosignature needs a timestamp")
            msg = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + text
            blob = vid + struct.pack(">Q", timestamp) + self._key.sign(msg)
        return f"{DASH}{self.name} {b64(blob)}\n"

    def encode(self) -> str:
        """The de-facto private-key string (Go x/mod): PRIVATE+KEY+name+id+base64(alg||seed)."""
        return (
            f"PRIVATE+KEY+{self.name}+{self.verifier.id.hex()}+{b64(bytes([self.alg]) + self.seed)}"
        )

    @classmethod
    def decode(cls, text: str) -> Signer:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("not a private key (PRIVATE+KEY+name+id+base64)")
        _, _, name, hexid, blob = parts
        raw = unb64(blob, "private key")
        if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise NoteError("only Ed25519 private keys are supported")
        s = cls(name, raw[1:], raw[0])
        if s.verifier.id.hex() != hexid:
            raise NoteError("the private key's id does not match")
        return s


@dataclass
class Signature:
    name: str
    key_id: bytes
    blob: bytes
    line: str


@dataclass
class Note:
    text: str
    signatures: list[Signature] = field(default_factory=list)

    @classmethod
    def parse(cls, data: str | bytes) -> Note:
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise NoteError("a note must be UTF-8 text") from None
        if not data.endswith("\n"):
            raise NoteError("a note must end with a newline")
        sep = data.rfind("\n\n")
        if sep < 0:
            raise NoteError("a note has no signature block")
        text, sigblock = data[: sep + 1], data[sep + 2 :]
        if any(ord(c) < 0x20 and c != "\n" for c in text):
            raise NoteError("a note's text has control characters")
        sigs = []
        for line in sigblock.splitlines():
            if not line.startswith(DASH):
                raise NoteError("a signature line must start with an em dash and a space")
            name, _, blob64 = line[len(DASH) :].rpartition(" ")
            if not name or " " in name:
                raise NoteError("a signature line has no key name")
            blob = unb64(blob64, "signature")
            if len(blob) < 5:
                raise NoteError("a signature is too short")
            sigs.append(Signature(name, blob[:4], blob, line + "\n"))
        if not sigs:
            raise NoteError("a note has no signatures")
        if len(sigs) > MAX_SIGNATURES:
            raise NoteError("a note has too many signatures")
        return cls(text, sigs)

    def verified_by(self, verifiers: list[Verifier]) -> dict[str, int]:
        """Names of the given keys that signed this note, with their cosignature times.

        Unknown signatures are ignored (key rotation, cosigners). A known key whose signature
        fails rejects the whole note, as the spec says.
        """
        ok: dict[str, int] = {}
        text = self.text.encode()
        for sig in self.signatures:
            for v in verifiers:
                if v.name == sig.name and v.id == sig.key_id:
                    ts = v.verify(text, sig.blob)
                    if ts is None:
                        raise NoteError(f"the signature by {v.name} does not verify")
                    ok[v.name] = ts
        return ok

    def render(self) -> str:
        return self.text + "\n" + "".join(s.line for s in self.signatures)

    def add(self, line: str) -> None:
        parsed = Note.parse(self.text + "\n" + line)
        for s in parsed.signatures:
            if not any(s.line == o.line for o in self.signatures):
                self.signatures.append(s)


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{b64(self.root)}\n"

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint has at least three lines: origin, size, root")
        origin, size_s, root_s = lines[0], lines[1], lines[2]
        if not origin:
            raise NoteError("a checkpoint's origin is empty")
        if not (size_s.isascii() and size_s.isdigit()) or (
            size_s != "0" and size_s.startswith("0")
        ):
            raise NoteError("a checkpoint's size must be a decimal number without leading zeros")
        root = unb64(root_s, "checkpoint root")
        if len(root) != HASH_SIZE:
            raise NoteError("a checkpoint's root must be 32 bytes")
        return cls(origin, int(size_s), root)


def open_checkpoint(data: str | bytes, log_key: Verifier) -> tuple[Checkpoint, Note]:
    """Parse a signed checkpoint and require the log's own signature."""
    note = Note.parse(data)
    if log_key.name not in note.verified_by([log_key]):
        raise NoteError(f"the checkpoint carries no signature by the log key {log_key.name}")
    cp = Checkpoint.parse_body(note.text)
    return cp, note
