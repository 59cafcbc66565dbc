"""A schemathesis **stateful** run over the whole API, once per role (issue #26, item 4).

    nice -n 10 python fuzz/api_stateful.py [--examples 40] [--steps 12] [--json FILE]

The API's own OpenAPI schema drives schemathesis' state machine: each scenario chains calls
along the schema's links (inferred by schemathesis' dependency analysis from the schema's
resources and their ids, e.g. `POST /v1/requests` -> `GET /v1/requests/{request_id}` ->
`POST .../process` -> `GET /v1/jobs/{job_id}`), with data generated for every parameter and
body. The run is repeated for every role — the agency's API key, each staff role's session,
both administrators, and no credential at all — against one real workspace, in-process (ASGI).

Every response is checked: no 5xx, and status code, content type, headers and body conform to
the schema (schemathesis' checks). Failures do not stop a run: each distinct one (operation,
check) is collected, so the table counts them all. Prints, per role: scenarios, calls, calls by
status class, 5xx and schema violations.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)


def _checks() -> list[Any]:
    from schemathesis import checks

    return [getattr(checks, n) for n in CHECK_NAMES]


def run_role(
    schema: Any, headers: dict[str, str], examples: int, steps: int, seed: int = 0
) -> dict[str, Any]:
    """One stateful run for one credential: counts and the distinct failures."""
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.stateful import run_state_machine_as_test

    checks = _checks()
    calls: Counter[str] = Counter()
    by_operation: Counter[str] = Counter()
    failures: dict[str, str] = {}
    scenarios = [0]
    base = schema.as_state_machine()

    class Machine(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            scenarios[0] += 1

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": dict(headers)}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            label = f"{case.method.upper()} {case.path}"
            code = response.status_code
            calls[f"{code // 100}xx"] += 1
            by_operation[label] += 1
            try:
                case.validate_response(response, checks=checks)
            except (AssertionError, BaseExceptionGroup) as exc:  # Failure, FailureGroup
                found = list(exc.exceptions) if isinstance(exc, BaseExceptionGroup) else [exc]
                for failure in found:
                    title = getattr(failure, "title", type(failure).__name__)
                    failures.setdefault(f"{label}: {title}", str(failure)[:600])

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],  # every failure is collected, not shrunk
            derandomize=True,
            database=None,
        ),
    )
    total = sum(calls.values())
    return {
        "scenarios": scenarios[0],
        "calls": total,
        "operations": len(by_operation),
        "by_status": dict(sorted(calls.items())),
        "server_errors": calls.get("5xx", 0),
        "failures": failures,
    }


def main() -> None:
    import schemathesis

    from fuzz.api_app import ROLES, served

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=40, help="scenarios per role")
    ap.add_argument("--steps", type=int, default=12, help="calls at most per scenario")
    ap.add_argument("--roles", default=",".join(ROLES))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = {}
    with served() as s:
        schema = schemathesis.openapi.from_asgi("/v1/openapi.json", s.client.app)  # type: ignore[attr-defined]
        links = sum(1 for n in dir(schema.as_state_machine()) if "___" in n)
        print(f"{len(list(schema.get_all_operations()))} operations, {links} links")
        print(
            f"{'role':<22} {'scenarios':>9} {'calls':>6} {'ops':>4} {'2xx':>5} {'4xx':>5} "
            f"{'5xx':>4} {'violations':>10}",
            flush=True,
        )
        for role in args.roles.split(","):
            r = run_role(schema, s.headers(role), args.examples, args.steps)
            rows[role] = r
            st = r["by_status"]
            violations = len([k for k in r["failures"] if "Server error" not in k])
            print(
                f"{role:<22} {r['scenarios']:>9} {r['calls']:>6} {r['operations']:>4} "
                f"{st.get('2xx', 0):>5} {st.get('4xx', 0):>5} {r['server_errors']:>4} "
                f"{violations:>10}",
                flush=True,
            )
            for key, detail in r["failures"].items():
                print(f"    {key}\n        {detail[:400]!r}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
