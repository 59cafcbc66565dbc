"""Benchmark: the law's reports at a million disclosures (issue #27 item 5).

A workspace whose ledger holds `--disclosures` disclosure events (spread over `--requests`
released requests, as a release records them, with their `disclosures` rows), then
`report accounting` and `report jct` through the service, whole, then stage by stage: the
events other than disclosures read (the disclosures are streamed while computing), the
computation, the item ids opened from the store, and the file written (CSV; `--pdf` adds a PDF
of the largest accounting a PDF is made of, `produce.PDF_MAX_ROWS` rows). Baseline in the same
run: a bare `SELECT body` of the same events with one `json.loads` each, the floor of any
report computed from bodies (held in a list, as the reports did; the next line is the same scan
holding nothing). Peak: the most memory resident during the stage (sampled every 20 ms), the
process's own included.

    .venv/bin/python bench/reports.py [--disclosures 1000000] [--requests 10] [--pdf]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from custodes.access import enter
from custodes.access.credentials import item_key
from custodes.ledger import log
from custodes.ledger.event_types import Disclosure, ReleaseDone, RequestReceived
from custodes.ledger.events import Event, item_sha256
from custodes.reports import produce
from custodes.services import reports
from custodes.services.workspace import init
from custodes.store.engine import bulk_insert
from custodes.store.tables import disclosures, ledger_events
from custodes.synthetic.staff import one_per_role
from custodes.workspace import open_workspace


def rss_gb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3


class Peak:
    """The most memory resident while it runs (a thread sampling /proc/self/statm)."""

    def __enter__(self) -> Peak:
        self.gb, self.done = rss_gb(), threading.Event()
        self.t = threading.Thread(target=self._watch, daemon=True)
        self.t.start()
        return self

    def _watch(self) -> None:
        while not self.done.wait(0.02):
            self.gb = max(self.gb, rss_gb())

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.t.join()
        self.gb = max(self.gb, rss_gb())


def fill(ws, actor: str, n: int, requests: int) -> None:  # type: ignore[no-untyped-def]
    """n disclosures over `requests` requests, recorded as intake and release record them."""
    key = item_key(ws)
    per = n // requests
    now = dt.datetime.now(dt.UTC)
    for r in range(requests):
        rid = f"req-bench{r:04d}"
        with ws.engine.begin() as conn:
            log.append(
                conn,
                [
                    Event(
                        RequestReceived(
                            provision="irc-6103-i-2",
                            agency="ICE",
                            envelope_sha256="e" * 64,
                            items_sha256="f" * 64,
                            content_sha256="0" * 64,
                            items=per,
                            dob_warnings=0,
                            taxable_periods=[2024],
                            fields_requested=["address"],
                            reason_sha256=None,
                            received_on_paper=False,
                            paper_sha256=None,
                        ),
                        actor=actor,
                        request_id=rid,
                    )
                ],
            )
        for s in range(0, per, 50_000):
            items = [f"item-{r}-{i}" for i in range(s, min(per, s + 50_000))]
            with ws.engine.begin() as conn:
                bulk_insert(
                    conn,
                    disclosures,
                    [
                        (rid, it, f"rec-{r:04d}{i:012d}", '["address"]', now)
                        for i, it in enumerate(items, s)
                    ],
                )
                log.append(
                    conn,
                    [
                        Event(
                            Disclosure(
                                item_sha256=item_sha256(key, rid, it),
                                fields=["address"],
                                provision="irc-6103-i-2",
                                agency="ICE",
                                recipients_sha256="c" * 64,
                                ruleset_sha256="a" * 64,
                                model_sha256="b" * 64,
                            ),
                            at=now,
                            actor=actor,
                            request_id=rid,
                            record_id=f"rec-{r:04d}{i:012d}",
                        )
                        for i, it in enumerate(items, s)
                    ],
                )
        with ws.engine.begin() as conn:
            log.append(
                conn,
                [
                    Event(
                        ReleaseDone(
                            response_sha256="d" * 64,
                            content_sha256="0" * 64,
                            disclosed=per,
                            recipients=["OFF-001"],
                            recipients_sha256="c" * 64,
                        ),
                        actor=actor,
                        request_id=rid,
                    )
                ],
            )


def timed(label: str, f, rows: list[tuple[str, float, float]]):  # type: ignore[no-untyped-def]
    with Peak() as peak:
        t = time.perf_counter()
        out = f()
        took = time.perf_counter() - t
    rows.append((label, took, peak.gb))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--disclosures", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--pdf", action="store_true", help="also write the accounting as a PDF")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        init(home, None, origin="bench.custodes/reports")
        ws = open_workspace(home, None)
        staff = one_per_role(ws)
        t = time.perf_counter()
        fill(ws, "officer", args.disclosures, args.requests)
        print(
            f"setup: {args.disclosures:,} disclosures recorded in {time.perf_counter() - t:.1f} s"
        )
        stages: list[tuple[str, float, float]] = []
        with ws.engine.connect() as conn:
            q = conn.execute(
                ledger_events.select()
                .with_only_columns(ledger_events.c.body)
                .where(ledger_events.c.type.in_(disc_types()))
            )
            timed(
                "baseline: SELECT body + json.loads", lambda: [json.loads(b) for (b,) in q], stages
            )
        with ws.engine.connect() as conn:
            q = conn.execute(
                ledger_events.select()
                .with_only_columns(ledger_events.c.body)
                .where(ledger_events.c.type.in_(disc_types()))
            )
            timed(
                "floor, streamed: the same, nothing held",
                lambda: sum(len(json.loads(b)) for (b,) in q),
                stages,
            )
        auditor = staff["auditor"]
        call = enter(ws, auditor, "reports.read")
        timed(
            "report jct (service, CSV, whole)",
            lambda: reports.jct(ws, auditor, year=dt.date.today().year, out=Path(tmp) / "jct.csv"),
            stages,
        )
        timed(
            "report accounting (service, CSV, whole)",
            lambda: reports.accounting(ws, auditor, out=Path(tmp) / "acc2.csv"),
            stages,
        )
        _, led = timed("events read (disclosures streamed)", lambda: produce.streamed(ws), stages)
        with produce.no_gc_pauses():
            doc = timed(
                "compute accounting", lambda: produce.compute("accounting", {}, led), stages
            )
        with produce.no_gc_pauses():
            doc = timed(
                "item ids opened from the store", lambda: produce.with_items(ws, doc), stages
            )
        timed("write CSV", lambda: produce.write(call, doc, Path(tmp) / "acc.csv"), stages)
        timed("write JSON", lambda: produce.write(call, doc, Path(tmp) / "acc.json"), stages)
        if args.pdf:
            part = dataclasses.replace(
                doc.tables[0], rows=doc.tables[0].rows[: produce.PDF_MAX_ROWS]
            )
            small = dataclasses.replace(doc, tables=[part])
            timed(
                f"write PDF ({len(part.rows):,} rows)",
                lambda: produce.write(call, small, Path(tmp) / "acc.pdf"),
                stages,
            )
        base_s = stages[0][1]
        print(f"{'stage':45s} {'seconds':>9s} {'x baseline':>11s} {'peak GB':>8s}")
        for label, s, gb in stages:
            print(f"{label:45s} {s:9.2f} {s / base_s:11.2f} {gb:8.2f}")
        ws.close()


def disc_types() -> tuple[str, ...]:
    from custodes.reports.source import REPORTED

    return REPORTED


if __name__ == "__main__":
    main()
