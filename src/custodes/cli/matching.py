"""match train | link | evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from custodes.cli import render
from custodes.cli.root import HomeOpt, JsonOpt, group, run, stages
from custodes.services import matching as svc

match_app = group(
    "match", "Matching: identify each requested person in the master file, never the wrong one."
)

BackendOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        "--backend",
        help="Where the job runs: duckdb (embedded) or spark (every bulk step as Spark SQL, "
        "on CUSTODES_SPARK_MASTER, default local[2]).",
    ),
]
MinPOpt = Annotated[
    float | None,
    typer.Option("--min-probability", help="Best candidate's match probability must reach this."),
]
MarginOpt = Annotated[
    float | None,
    typer.Option("--margin", help="Bits of match weight the best must beat the runner-up by."),
]
NamesakeOpt = Annotated[
    float | None,
    typer.Option(
        "--namesake-margin",
        help="Bits beyond log2(master) + log2(items at risk) that a match resting on name and "
        "DOB alone must carry (default 0).",
    ),
]
ReviewPOpt = Annotated[
    float | None,
    typer.Option("--review-probability", help="Below identification, at least this: review."),
]


def _show_model(info: dict[str, Any]) -> None:
    render.kv(
        "Model trained and made current",
        {
            "model": info["model_sha256"],
            "trained on": info["trained_on"],
            "master file": info["master_sha256"][:16],
            "prior (λ)": f"{info['prior']:.3g}",
            **info["thresholds"],
            "seconds": info["seconds"],
        },
    )


def _thresholds(
    min_probability: float | None,
    margin: float | None,
    review_probability: float | None,
    namesake_margin: float | None,
) -> dict[str, float | None]:
    """The threshold options by the model's names (None: the model's value)."""
    return {
        "min_probability": min_probability,
        "min_margin_bits": margin,
        "review_probability": review_probability,
        "namesake_margin_bits": namesake_margin,
    }


@match_app.command("train")
def match_train(
    request: Annotated[
        str | None,
        typer.Option(
            "--request",
            help="The received request whose items teach the model how requests differ from "
            "the records (default: the latest received).",
        ),
    ] = None,
    backend: BackendOpt = "duckdb",
    min_probability: MinPOpt = None,
    margin: MarginOpt = None,
    review_probability: ReviewPOpt = None,
    namesake_margin: NamesakeOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for u sampling.")] = 1,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the linkage model (Fellegi–Sunter, unsupervised) on the master file and a request,
    save it with its content hash and make it current. Retraining is always explicit."""
    t = _thresholds(min_probability, margin, review_probability, namesake_margin)

    with stages(json_out) as progress:
        run(
            home,
            json_out,
            svc.train,
            request,
            backend=backend,
            thresholds=t,
            seed=seed,
            progress=progress,
            view=_show_model,
        )


@match_app.command("link")
def match_link(
    request_id: Annotated[str, typer.Argument(help="The request's id.")],
    backend: BackendOpt = "duckdb",
    min_probability: MinPOpt = None,
    margin: MarginOpt = None,
    review_probability: ReviewPOpt = None,
    namesake_margin: NamesakeOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Identify every item of a request: best candidate and runner-up, their probabilities and
    per-field weights, ambiguity flags, the person gate and whether the supplied address is on
    record. Writes requests/<id>/match/linked.parquet; changes no request state."""
    overrides = _thresholds(min_probability, margin, review_probability, namesake_margin)
    with stages(json_out) as progress:
        run(
            home,
            json_out,
            svc.link,
            request_id,
            backend=backend,
            overrides=overrides,
            progress=progress,
            view=lambda res: render.kv(f"Linked {request_id}", res.to_dict()),
        )


def _count(key: str) -> render.Cell:
    """A table cell: the row's count under `key`, 0 when it has none."""
    return lambda r: r.get(key, 0)


def _show_evaluation(report: dict[str, Any]) -> None:
    render.kv(
        f"Evaluation of {report['request_id']} at the model's thresholds",
        report["at_thresholds"],
    )
    render.rows(
        "Status by kind of item",
        [{"kind": k} | v for k, v in report["status_by_kind"].items()],
        [("kind", "kind")]
        + [(s.replace("_", " "), _count(s)) for s in ("identified", "review", "not_identified")],
    )
    if set(report["by_corruption"]) - {"none"}:
        render.rows(
            "In-file items by modification (truth's corruptions column)",
            [{"kind": k} | v for k, v in report["by_corruption"].items()],
            [("modification", "kind")]
            + [
                (s.replace("_", " "), s)
                for s in ("items", "identified", "wrong", "review", "not_identified")
            ],
        )
    if report.get("evidence"):
        e = report["evidence"]
        render.kv(
            "Person evidence the list still carries",
            {
                "on-file items": f"{e['in_file']:,}",
                "carrying two of three": f"{e['carrying_two_of_three']:,} "
                f"(ceiling: {100 * (e['ceiling_recall'] or 0):.2f} % recall)",
                "identified of those": f"{e['identified_of_those']:,} "
                f"({100 * (e['recall_within_ceiling'] or 0):.2f} %)",
                "identified on less": f"{e['identified_on_less']:,}",
            },
        )
        render.say(
            "Two of first name, date of birth and TIN within a typo: with fewer, nothing tells "
            "the person from a relative at the same house, so no gate that protects relatives "
            "passes the ceiling."
        )
    render.rows(
        "Grid",
        [g for g in report["grid"] if g["min_margin_bits"] in (0.0, 3.0)],
        [
            ("min p", "min_probability"),
            ("margin", "min_margin_bits"),
            ("gate", "gate"),
            ("identified", "identified"),
            ("wrong", "wrong"),
            ("recall", lambda g: f"{100 * (g['recall'] or 0):.2f}%"),
        ],
    )
    render.say(f"Report: {report['report']}  Plot: {report['plot']}")


@match_app.command("evaluate")
def match_evaluate(
    truth: Annotated[
        Path,
        typer.Option(
            "--truth",
            help="CSV with item_id, record_id (empty: not on file), optional defect "
            "(absent_relative marks a household member).",
        ),
    ],
    request_id: Annotated[
        str | None, typer.Argument(help="The linked request (default: the latest received).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for evaluation.json and evaluation.png (default: the request's match "
            "folder).",
        ),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Precision, recall, wrong-person accepts by kind (in file, absent relative, absent
    stranger) and review rate at the model's thresholds and over a grid, and how many items
    still carry two of first name, date of birth and TIN (the recall a gate that protects
    relatives can reach); writes a report and a plot of wrong-person accepts and recall
    against the threshold."""

    run(home, json_out, svc.evaluate, truth, request_id, out_dir, view=_show_evaluation)
