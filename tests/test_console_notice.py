"""The console's sign-in page shows the system-use notification (NIST SP 800-53 AC-8, asked of
systems holding Federal Tax Information by IRS Publication 1075) and the official-website
banner; the notice's wording is configuration (issue #24, item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import Template, copy_template
from custodes.app import create_app


def test_sign_in_shows_the_system_use_notice_from_configuration(
    tmp_path: Path, _master_template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = copy_template(_master_template, tmp_path / "t")
    home, url = ws.home, str(ws.engine.url)
    ws.close()
    with TestClient(create_app(home, url), base_url="https://testserver") as web:
        page = web.get("/sign-in").text
        assert "System use notification" in page and "Federal Tax Information" in page
        assert "26 U.S.C. 7213" in page
        assert "An official website of the United States government" in page
        notice = tmp_path / "notice.txt"
        notice.write_text("Authorized users of the Agency only.\nActivity is recorded.\n")
        monkeypatch.setenv("CUSTODES_SYSTEM_USE_NOTICE", str(notice))
        page = web.get("/sign-in").text
        assert "Authorized users of the Agency only. Activity is recorded." in page
        assert "Federal Tax Information" not in page
        notice.write_bytes(b"\xff\xfe not text")
        r = web.get("/sign-in")
        assert r.status_code == 503 and "bad_configuration" in r.text
