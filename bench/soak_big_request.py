"""The soak's large request (bench/soak.py), through the API as its users do it, in a thread
of its own beside the open-loop load."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class BigRequest(threading.Thread):
    """The agency uploads the large request; the officer trains, processes, resolves review,
    prepares; the approver approves; the officer releases and downloads the response."""

    def __init__(self, url: str, tokens: dict[str, str], folder: Path, t0: float) -> None:
        super().__init__(daemon=True)
        self.url, self.tokens, self.folder, self.t0 = url, tokens, folder, t0
        self.steps: list[tuple[str, float, float, str]] = []  # step, started, took, outcome
        self.error = ""
        self.rid = ""

    def client(self, who: str) -> Any:
        import httpx

        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[who]}"}, timeout=3600
        )

    def step(self, name: str, fn: Any) -> Any:
        t = time.perf_counter()
        try:
            out = fn()
        except Exception as exc:
            self.steps.append((name, t - self.t0, time.perf_counter() - t, f"failed: {exc}"))
            raise
        self.steps.append((name, t - self.t0, time.perf_counter() - t, "ok"))
        return out

    @staticmethod
    def call(c: Any, method: str, path: str, **kw: Any) -> Any:
        """One call, again after its Retry-After while the server sheds load (503), as a
        client does."""
        for _ in range(600):
            r = c.request(method, path, **kw)
            if r.status_code != 503 or "retry-after" not in r.headers:
                return r
            time.sleep(float(r.headers["retry-after"]))
        return r

    def job(self, c: Any, r: Any) -> dict[str, Any]:
        if r.status_code != 202:
            raise RuntimeError(f"{r.status_code} {r.text[:300]}")
        while True:
            j: dict[str, Any] = self.call(c, "GET", r.headers["location"]).json()
            if j["state"] == "succeeded":
                return j
            if j["state"] in ("failed", "cancelled"):
                raise RuntimeError(f"job {j['state']}: {json.dumps(j.get('problem'))[:300]}")
            time.sleep(1)

    def ok(self, r: Any) -> Any:
        if r.status_code >= 300:
            raise RuntimeError(f"{r.status_code} {r.text[:300]}")
        return r.json()

    def run(self) -> None:
        try:
            with (
                self.client("agency-a") as agency,
                self.client("officer") as officer,
                self.client("approver") as approver,
            ):

                def upload() -> dict[str, Any]:
                    with (
                        open(self.folder / "envelope.json", "rb") as e,
                        open(self.folder / "items.csv", "rb") as i,
                    ):
                        r = self.call(
                            agency,
                            "POST",
                            "/v1/requests",
                            files={"envelope": e, "items": i},
                            headers={"Prefer": "respond-async"},
                        )
                    return self.job(agency, r)

                self.rid = self.step("submit (upload, intake job)", upload)["result"]["request_id"]
                rid = self.rid
                for kind in ("train", "process"):
                    self.step(
                        kind,
                        lambda k=kind: self.job(
                            officer, self.call(officer, "POST", f"/v1/requests/{rid}/{k}")
                        ),
                    )

                def review() -> int:
                    n = 0
                    for g in self.ok(
                        self.call(officer, "GET", f"/v1/requests/{rid}/review/groups")
                    ):
                        body = {"decision": "withhold", "reason": "soak", "group": g["group"]}
                        n += self.ok(
                            self.call(officer, "POST", f"/v1/requests/{rid}/review", json=body)
                        )["resolved"]
                    return n

                self.step("review (withhold every group)", review)
                self.step(
                    "prepare",
                    lambda: self.ok(self.call(officer, "POST", f"/v1/requests/{rid}/prepare")),
                )
                self.step(
                    "approve",
                    lambda: self.ok(self.call(approver, "POST", f"/v1/requests/{rid}/approve")),
                )
                self.step(
                    "release",
                    lambda: self.job(
                        officer, self.call(officer, "POST", f"/v1/requests/{rid}/release")
                    ),
                )

                def download() -> int:
                    n = 0
                    with officer.stream("GET", f"/v1/requests/{rid}/response.csv") as r:
                        if r.status_code != 200:
                            raise RuntimeError(f"{r.status_code}")
                        for chunk in r.iter_bytes():
                            n += len(chunk)
                    return n

                self.step("download response.csv", download)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
