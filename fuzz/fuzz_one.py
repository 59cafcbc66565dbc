"""Fuzz one harness with atheris (libFuzzer, coverage-guided over custodes' own code).

    python fuzz/fuzz_one.py NAME [libFuzzer options] [corpus folders]

`fuzz/run.py` runs this once per harness and reads its statistics. A crash does not stop the
run: its input is saved under `fuzz/crashers/NAME/` (one per distinct place it failed) and the
run goes on, so one campaign finds every crasher it can; the count of crashing executions and
of distinct crashers is printed at the end as `custodes-fuzz: ...` lines.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import atheris

NAME = sys.argv[1]
CRASHERS = Path(__file__).resolve().parent / "crashers" / NAME
# libFuzzer leaves by _exit (no atexit): the counts are kept in a file the runner reads.
COUNT = Path(__file__).resolve().parent / "logs" / f"{NAME}.crashes"

with atheris.instrument_imports(include=["custodes"]):
    from fuzz import harnesses

    if NAME == "api_json":
        harnesses.register_api()
    HARNESS = harnesses.HARNESSES[NAME]
    # Running the seeds once imports every module the harness reaches, instrumented; they
    # are written to the corpus folder (the last argument) for libFuzzer to start from.
    corpus = Path(sys.argv[-1])
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(HARNESS.seeds()):
        (corpus / f"seed-{i:03d}").write_bytes(seed)
        with contextlib.suppress(Exception):  # a seed's own answer is the fuzzer's business
            HARNESS.target(seed)

crashing = 0
seen: set[str] = set()


def _signature(exc: BaseException) -> str:
    """Where it failed: the exception's type and the innermost custodes frame."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/custodes/" in f.filename]
    where = f"{frames[-1].filename.split('/custodes/')[-1]}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}"


def one_input(data: bytes) -> None:
    global crashing
    try:
        harnesses.expect_coded(HARNESS.target, data)
    except Exception as exc:  # the thing we are looking for: anything not coded
        crashing += 1
        COUNT.parent.mkdir(exist_ok=True)
        COUNT.write_text(f"{crashing} {len(seen) + (_signature(exc) not in seen)}\n")
        sig = _signature(exc)
        if sig not in seen:
            seen.add(sig)
            CRASHERS.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256(data).hexdigest()[:16]
            (CRASHERS / f"crash-{digest}").write_bytes(data)
            (CRASHERS / f"crash-{digest}.txt").write_text(
                sig + "\n\n" + "".join(traceback.format_exception(exc))
            )
            print(f"custodes-fuzz: new crasher: {sig}", file=sys.stderr, flush=True)


def main() -> None:
    COUNT.unlink(missing_ok=True)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
