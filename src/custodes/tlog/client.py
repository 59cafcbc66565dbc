"""The HTTP exchanges with a C2SP tlog-witness (https://c2sp.org/tlog-witness@v1.0.0): POST a
checkpoint to `add-checkpoint`, and GET the checkpoint it last cosigned for a log (the read
endpoint of `witness.py`). Only the wire: what the answers mean is the caller's to decide."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from custodes.errors import InputError

TIMEOUT = 10.0


def usable(url: str) -> bool:
    """Whether `url` is one this client can speak to (an http(s) URL with a host)."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def add_checkpoint(url: str, body: str) -> tuple[int, str]:
    """POST `body` to the witness's add-checkpoint: its status and text, whatever the status."""
    req = urllib.request.Request(
        url.rstrip("/") + "/add-checkpoint", data=body.encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace").strip()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise InputError(
            f"The witness at {url} cannot be reached ({type(exc).__name__}); the checkpoint "
            "was not published.",
            code="witness_unreachable",
        ) from None


def checkpoint(url: str, origin: str) -> bytes | None:
    """The checkpoint the witness last cosigned for `origin`, as it sent it (None on 404)."""
    query = urllib.parse.urlencode({"origin": origin})
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/checkpoint?{query}", timeout=TIMEOUT) as r:
            data: bytes = r.read()
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise InputError(
            f"The witness answered {exc.code} for its checkpoint.", code="witness_unreachable"
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise InputError(
            f"The witness at {url} cannot be reached ({type(exc).__name__}).",
            code="witness_unreachable",
        ) from None
