"""The ledger's signing key in an HSM (#23 finding 3): a workspace initialised with a PKCS#11
URI signs every checkpoint inside the token (SoftHSM2 here, `make softhsm`), keeps no private
key anywhere, and `ledger verify` passes with the token's public key. The PIN comes from a
pin-source file or CUSTODES_PKCS11_PIN, never from the URI."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import PASSWORD
from custodes.cli import app
from custodes.errors import CustodesError
from custodes.ledger import keys
from custodes.ledger import pkcs11 as pkcs11_mod
from custodes.services import decisions, matching, records, requests, rules
from custodes.services import ledger as ledger_svc
from custodes.services import workspace as ws_svc
from custodes.synthetic import staff as staff_mod
from custodes.tlog.note import Note, Verifier
from custodes.workspace import open_workspace

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
ORIGIN = "custodes.test/hsm-ledger"
runner = CliRunner()


@dataclass
class Token:
    uri: str  # with pin-source and module-path
    public: bytes
    pin_file: Path


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Token]:
    """A SoftHSM2 token in its own folder (SOFTHSM2_CONF), with an Ed25519 key made in it the
    way an HSM's officers make one (the key is generated inside and never exported)."""
    if not os.path.exists(MODULE):
        pytest.fail("SoftHSM2 is required for this test: run 'make softhsm'.")
    import pkcs11
    from pkcs11.util.ec import encode_named_curve_parameters

    folder = tmp_path / "hsm"
    (folder / "tokens").mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "custodes-test",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ],
        check=True,
        capture_output=True,
        env=os.environ | {"SOFTHSM2_CONF": str(conf)},
    )
    # python-pkcs11 loads one module per process and SoftHSM reads its configuration once,
    # at C_Initialize: the module is re-initialised for this token's folder.
    lib = pkcs11_mod.library(MODULE)
    lib.reinitialize()
    with lib.get_token(token_label="custodes-test").open(user_pin="1234", rw=True) as session:
        params = session.create_domain_parameters(
            pkcs11.KeyType.EC_EDWARDS,
            {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.101.112")},
            local=True,
        )
        pub, priv = params.generate_keypair(
            mechanism=pkcs11.Mechanism.EC_EDWARDS_KEY_PAIR_GEN, store=True, label="ledger"
        )
        assert not priv[pkcs11.Attribute.EXTRACTABLE] and priv[pkcs11.Attribute.SENSITIVE]
        public = bytes(pub[pkcs11.Attribute.EC_POINT])[2:]
    pin_file = folder / "pin"
    pin_file.write_text("1234\n")
    pin_file.chmod(0o600)
    uri = (
        f"pkcs11:token=custodes-test;object=ledger?pin-source=file:{pin_file}&module-path={MODULE}"
    )
    yield Token(uri, public, pin_file)


def _small_release(home: Path, folder: Path) -> None:
    """A full small flow: staff, a master file, a request received, processed, reviewed,
    prepared, approved and released (each release signs a checkpoint)."""
    ws = open_workspace(home)
    try:
        people = staff_mod.one_per_role(ws, password=PASSWORD)
        records.generate(ws, people.admin, 600, 5)
        rules.register_parties(ws, people.admin, "irc-6103-i-2")
        requests.generate(ws, people.admin, "irc-6103-i-2", 30, 3, folder)
        rid = requests.submit(ws, people["requester"], folder).request_id
        matching.train(ws, people["officer"], rid)
        decisions.process(ws, people["officer"], rid)
        for _ in range(2):
            try:
                decisions.prepare(ws, people["officer"], rid)
                break
            except CustodesError as exc:
                assert exc.code == "review_open"
                decisions.review_resolve(ws, people["officer"], rid, "WITHHOLD", "unsure")
        decisions.approve(ws, people["approver"], rid)
        decisions.release(ws, people["officer"], rid, folder / "out")
    finally:
        ws.close()


def test_a_workspace_signs_its_ledger_inside_the_hsm(token: Token, tmp_path: Path) -> None:
    home = tmp_path / "ws"
    info = ws_svc.init(home, origin=ORIGIN, ledger_key=token.uri)
    log_key = Verifier(ORIGIN, 0x01, token.public)
    assert info["vkey"] == log_key.vkey  # the verifier key is the token's own public key
    _small_release(home, tmp_path / "req")

    # No private key anywhere in the workspace: keys/ledger.key holds only the URI (no PIN).
    assert (home / "keys" / "ledger.key").read_text().strip() == token.uri
    for path in home.rglob("*"):
        if path.is_file():
            assert b"PRIVATE+KEY" not in path.read_bytes(), path
    released = (tmp_path / "req" / "out" / "response.json").read_text()
    assert ORIGIN in released
    ws = open_workspace(home)
    try:
        last = ws_svc.status(ws, staff_mod.administrators(ws, password=PASSWORD).admin)
        assert last["ledger_key"] == "hsm"
        assert not any("key is a file" in w for w in last["warnings"])
        with ws.engine.connect() as conn:
            from custodes.ledger import log

            cp, note = log.latest_checkpoint(conn)  # type: ignore[misc]
        assert cp.size > 50 and log_key.name in Note.parse(note.render()).verified_by([log_key])
    finally:
        ws.close()

    # An outsider verifies with the public key; the store audit passes with it too.
    env = {"CUSTODES_SESSION": ""}
    ws = open_workspace(home)
    try:
        from custodes.access import sessions

        env["CUSTODES_SESSION"] = sessions.login(ws, "auditor", PASSWORD)
    finally:
        ws.close()
    home_opt = ["--home", str(home)]
    r = runner.invoke(app, ["ledger", "verify", *home_opt, "--key", log_key.vkey], env=env)
    assert r.exit_code == 0 and "Verified." in r.output, r.output
    r = runner.invoke(app, ["ledger", "export", str(tmp_path / "exp"), *home_opt], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["ledger", "verify", str(tmp_path / "exp"), "--key", log_key.vkey])
    assert r.exit_code == 0 and "Verified." in r.output, r.output


def test_the_pin_comes_from_a_file_or_the_environment_never_the_uri(
    token: Token, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = f"pkcs11:token=custodes-test;object=ledger?module-path={MODULE}"
    r = runner.invoke(
        app, ["init", "--home", str(tmp_path / "a"), "--ledger-key", bare + "&pin-value=1234"]
    )
    assert r.exit_code == 2 and "bad_pkcs11_uri" in r.output and "1234" not in r.output
    monkeypatch.delenv("CUSTODES_PKCS11_PIN", raising=False)
    r = runner.invoke(app, ["init", "--home", str(tmp_path / "b"), "--ledger-key", bare])
    assert r.exit_code != 0 and "hsm_unavailable" in r.output and "PIN" in r.output
    monkeypatch.setenv("CUSTODES_PKCS11_PIN", "0000")
    r = runner.invoke(app, ["init", "--home", str(tmp_path / "c"), "--ledger-key", bare])
    assert r.exit_code != 0 and "hsm_unavailable" in r.output  # a wrong PIN
    monkeypatch.setenv("CUSTODES_PKCS11_PIN", "1234")
    no_module = bare.split("?")[0]  # neither module-path nor CUSTODES_PKCS11_MODULE
    monkeypatch.delenv("CUSTODES_PKCS11_MODULE", raising=False)
    r = runner.invoke(app, ["init", "--home", str(tmp_path / "e"), "--ledger-key", no_module])
    assert r.exit_code != 0 and "hsm_unavailable" in r.output and "library" in r.output
    r = runner.invoke(app, ["init", "--home", str(tmp_path / "d"), "--ledger-key", bare])
    assert r.exit_code == 0, r.output
    assert Verifier.parse(r.output.split("(publish it): ")[1].split()[0]).public == token.public


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("/etc/custodes/ledger.key", "bad_pkcs11_uri"),  # --ledger-key names an HSM's key
        ("pkcs11:token=custodes-test", "bad_pkcs11_uri"),  # no key named
        ("pkcs11:token=custodes-test;object=ledger;colour=red", "bad_pkcs11_uri"),
        ("pkcs11:token=custodes-test;object=ledger;type=secret-key", "bad_pkcs11_uri"),
        ("pkcs11:token=custodes-test;object=nope", "hsm_key_missing"),
        ("pkcs11:token=no-such-token;object=ledger", "hsm_unavailable"),
    ],
)
def test_unusable_hsm_keys_are_refused_and_nothing_is_kept(
    token: Token, tmp_path: Path, value: str, code: str
) -> None:
    if value.startswith("pkcs11:"):
        value += f"?pin-source=file:{token.pin_file}&module-path={MODULE}"
    with pytest.raises(CustodesError) as err:
        ws_svc.init(tmp_path / "ws", ledger_key=value)
    assert err.value.code == code
    assert not (tmp_path / "ws" / "keys" / "ledger.key").exists()


def test_status_warns_of_a_key_file_and_of_no_witness(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    ws_svc.init(home, origin=ORIGIN)
    ws = open_workspace(home)
    try:
        from custodes.access import sessions

        staff_mod.one_per_role(ws, password=PASSWORD)
        env = {"CUSTODES_SESSION": sessions.login(ws, "officer", PASSWORD)}
        assert keys.hsm_uri(ws) is None
    finally:
        ws.close()
    with pytest.raises(CustodesError) as err:  # a ledger keeps its key: no switch at init
        ws_svc.init(home, ledger_key="pkcs11:token=t;object=ledger")
    assert err.value.code == "key_exists"
    r = runner.invoke(app, ["status", "--home", str(home)], env=env)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "Warning: The ledger's signing key is a file in the workspace" in text
    assert "Keep it in an HSM" in text
    assert "Warning: No witness cosigns this ledger's checkpoints" in text
    # ...and the workspace keeps working without either.
    ws = open_workspace(home)
    try:
        done = ledger_svc.checkpoint(ws, staff_mod.administrators(ws, password=PASSWORD).admin)
        assert done["size"] > 0 and "\n\n\u2014 " + ORIGIN in done["note"]
    finally:
        ws.close()


def test_a_second_host_joins_with_the_same_hsm_key(token: Token, tmp_path: Path) -> None:
    """A second host joins the deployment with the HSM key's URI: its folder keeps only the
    URI, and what it signs verifies with the ledger's one key."""
    store = f"sqlite:///{tmp_path / 'store.db'}"
    ws_svc.init(tmp_path / "host1", store, origin=ORIGIN, ledger_key=token.uri)
    ws_svc.join(
        tmp_path / "host2",
        store,
        ledger_key=token.uri,
        secrets_key=str(tmp_path / "host1" / "keys" / "secrets.key"),
    )
    assert (tmp_path / "host2" / "keys" / "ledger.key").read_text().strip() == token.uri
    ws = open_workspace(tmp_path / "host2", store)
    try:
        done = ledger_svc.checkpoint(ws, staff_mod.administrators(ws, password=PASSWORD).admin)
        log_key = Verifier(ORIGIN, 0x01, token.public)
        assert Note.parse(done["note"]).verified_by([log_key])
    finally:
        ws.close()
    with pytest.raises(CustodesError) as err:  # a malformed URI is refused before anything
        ws_svc.join(tmp_path / "host3", store, ledger_key="pkcs11:object=ledger;pin-value=1")
    assert err.value.code == "bad_pkcs11_uri" and not (tmp_path / "host3").exists()
