"""The ledger's Ed25519 signing key inside a PKCS#11 token (an HSM; SoftHSM2 in the tests).

The key is named by a PKCS#11 URI (RFC 7512), e.g.
``pkcs11:token=custodes;object=ledger?pin-source=file:/etc/custodes/hsm.pin&module-path=...``.
The key never leaves the token: checkpoints are signed inside it (CKM_EDDSA); custodes reads
only the public key. The PIN comes from the URI's ``pin-source`` (a file readable by its owner)
or from ``CUSTODES_PKCS11_PIN``, never from the URI itself (a ``pin-value`` is refused: a URI is
given on command lines and kept in the workspace). The token's library comes from the URI's
``module-path`` or ``CUSTODES_PKCS11_MODULE``.

The binding is python-pkcs11 (maintained, supports CKK_EC_EDWARDS and CKM_EDDSA; see
docs/decisions/2026-12-06-pkcs11-binding.md). Only the RFC 7512 URI parsing is written here:
python-pkcs11 has none, and the grammar needed (path and query attributes, percent-decoding) is
a few lines over urllib.parse.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from custodes import settings
from custodes.errors import fail
from custodes.tlog.note import ALG_ED25519, DASH, Verifier, _check_name, b64

SCHEME = "pkcs11:"
_PATH_ATTRS = {"token", "object", "id", "type", "serial", "manufacturer", "model"}
_QUERY_ATTRS = {"pin-source", "module-path", "module-name"}
_libs: dict[str, Any] = {}  # one loaded module per path for the process (the library's rule)
_lock = threading.Lock()
# One session at a time: a token's login state is shared by the process, so two threads
# logging in at once would be refused (CKR_USER_ALREADY_LOGGED_IN).
_in_use = threading.Lock()


def is_uri(value: str | None) -> bool:
    return bool(value) and str(value).strip().startswith(SCHEME)


@dataclass(frozen=True)
class Pkcs11Uri:
    token: str | None
    object: str | None
    id: bytes | None
    module: str | None
    pin_source: str | None
    text: str

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Uri:
        uri = uri.strip()
        if not is_uri(uri):
            raise fail("bad_pkcs11_uri", "A PKCS#11 URI starts with 'pkcs11:' (RFC 7512).")
        path, _, query = uri[len(SCHEME) :].partition("?")
        attrs: dict[str, str] = {}
        for part, allowed in ((path, _PATH_ATTRS), (query, _QUERY_ATTRS)):
            for item in part.split(";" if part is path else "&"):
                if not item:
                    continue
                name, sep, value = item.partition("=")
                if name == "pin-value":
                    raise fail(
                        "bad_pkcs11_uri",
                        "A PKCS#11 URI must not carry the PIN (pin-value): give it in a "
                        "pin-source file or in CUSTODES_PKCS11_PIN.",
                    )
                if not sep or name not in allowed or name in attrs:
                    raise fail(
                        "bad_pkcs11_uri",
                        f"The PKCS#11 URI's attribute '{name[:40]}' is unknown, repeated or "
                        "has no value.",
                    )
                attrs[name] = unquote(value)
        if "object" not in attrs and "id" not in attrs:
            raise fail("bad_pkcs11_uri", "The PKCS#11 URI must name the key (object= or id=).")
        if attrs.get("type", "private") != "private":
            raise fail("bad_pkcs11_uri", "The PKCS#11 URI must name a private key (type=private).")
        key_id = attrs.get("id")
        return cls(
            token=attrs.get("token"),
            object=attrs.get("object"),
            id=unquote(key_id, encoding="latin-1").encode("latin-1") if key_id else None,
            module=attrs.get("module-path"),
            pin_source=attrs.get("pin-source"),
            text=uri,
        )

    def pin(self) -> str:
        if self.pin_source:
            src = self.pin_source
            path = Path(urlparse(src).path if src.startswith("file:") else src)
            try:
                return path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                raise fail(
                    "hsm_unavailable", "The PKCS#11 URI's pin-source file cannot be read."
                ) from None
        pin = settings.raw("CUSTODES_PKCS11_PIN")
        if not pin:
            raise fail(
                "hsm_unavailable",
                "No PIN for the HSM: set CUSTODES_PKCS11_PIN or add pin-source=FILE to the URI.",
            )
        return pin

    def module_path(self) -> str:
        module = self.module or settings.raw("CUSTODES_PKCS11_MODULE")
        if not module:
            raise fail(
                "hsm_unavailable",
                "No PKCS#11 library named: set CUSTODES_PKCS11_MODULE or add module-path= to "
                "the URI.",
            )
        return module


def library(module: str) -> Any:
    """The PKCS#11 module at `module`, loaded and initialised once per process (C_Initialize
    may be called only once per module)."""
    import pkcs11

    with _lock:
        if module not in _libs:
            _libs[module] = pkcs11.lib(module)
        return _libs[module]


class Pkcs11Signer:
    """Signs C2SP notes with an Ed25519 key held in a PKCS#11 token (same interface as
    `note.Signer` for the ledger's own signatures)."""

    alg = ALG_ED25519

    def __init__(self, name: str, uri: str) -> None:
        _check_name(name)
        self.name = name
        self.uri = Pkcs11Uri.parse(uri)

    def _session(self) -> Any:
        import pkcs11  # imported when a token is used: most workspaces never load it

        module = self.uri.module_path()
        try:
            lib = library(module)
            token = lib.get_token(token_label=self.uri.token) if self.uri.token else None
            if token is None:
                slots = lib.get_slots(token_present=True)
                if len(slots) != 1:
                    raise fail(
                        "hsm_unavailable",
                        "Name the token in the PKCS#11 URI (token=): several or none are present.",
                    )
                token = slots[0].get_token()
            return token.open(user_pin=self.uri.pin())
        except pkcs11.PKCS11Error as exc:
            raise fail(
                "hsm_unavailable", f"The HSM cannot be used: {type(exc).__name__}."
            ) from None
        except RuntimeError:  # the module cannot be loaded
            raise fail("hsm_unavailable", "The PKCS#11 library cannot be loaded.") from None

    def _key(self, session: Any, cls: Any) -> Any:
        import pkcs11

        kw: dict[str, Any] = {"object_class": cls, "key_type": pkcs11.KeyType.EC_EDWARDS}
        if self.uri.object:
            kw["label"] = self.uri.object
        if self.uri.id:
            kw["id"] = self.uri.id
        try:
            return session.get_key(**kw)
        except (pkcs11.NoSuchKey, pkcs11.MultipleObjectsReturned):
            raise fail(
                "hsm_key_missing",
                "The token holds no single Ed25519 key by the name in the PKCS#11 URI.",
            ) from None

    @cached_property
    def public(self) -> bytes:
        import pkcs11

        with _in_use, self._session() as session:
            point = self._key(session, pkcs11.ObjectClass.PUBLIC_KEY)[pkcs11.Attribute.EC_POINT]
        # CKA_EC_POINT is DER: an OCTET STRING (0x04, length 32) around the raw key.
        if len(point) == 34 and point[:2] == b"\x04\x20":
            point = point[2:]
        if len(point) != 32:
            raise fail("hsm_key_missing", "The key named in the PKCS#11 URI is not Ed25519.")
        return bytes(point)

    def check(self) -> None:
        """Reach the token and find the key now (refused with a coded error otherwise)."""
        _ = self.public

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, ALG_ED25519, self.public)

    def sign(self, text: bytes, timestamp: int | None = None) -> str:
        """One signature line for `text`, made inside the token (CKM_EDDSA, pure Ed25519)."""
        import pkcs11

        vid = self.verifier.id
        with _in_use, self._session() as session:
            key = self._key(session, pkcs11.ObjectClass.PRIVATE_KEY)
            try:
                sig = key.sign(text, mechanism=pkcs11.Mechanism.EDDSA)
            except pkcs11.PKCS11Error as exc:
                raise fail(
                    "hsm_unavailable", f"The HSM refused to sign: {type(exc).__name__}."
                ) from None
        return f"{DASH}{self.name} {b64(vid + bytes(sig))}\n"
