"""Raw and Parley runs paired into rounds, and the ratio gate on them.

A dispatch benchmark runs raw, Parley, raw, Parley, ..., raw against one peer; each
Parley run is compared with the better raw run beside it (a slow raw run never helps
Parley) and the median round is the figure: the machines here vary +-15-30% from run to
run (reference/performance.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from parley.bench.common import gate


def add_round_options(parser: argparse.ArgumentParser) -> None:
    """`--rounds` and `--raw-runs`, as the dispatch workloads take them."""
    parser.add_argument(
        "--raw-runs",
        type=int,
        choices=(1, 2),
        default=2,
        help="with one round: raw before Parley only (1) or before and after (2)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="Parley runs, each between two raw runs; the gate is on the median round's "
        "ratio (the machines here are noisy, +-15-30%% run to run); default 3, 1 with "
        "--quick",
    )


def settle_round_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Default `--rounds`: 3, or 1 for a `--quick` smoke run."""
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")


def rounds_setting(args: argparse.Namespace) -> str:
    """How the raw runs and Parley runs are paired, for a record's settings."""
    if args.rounds > 1:
        return (
            f"{args.rounds} rounds, each a Parley run between raw runs (raw, Parley, raw, "
            "Parley, ..., raw); a round's ratio is against the better raw run beside it; "
            "the gate is on the median round"
        )
    return f"{args.raw_runs} run(s) (before/after Parley), best one is the figure"


def rounds_summary(table: dict[str, Any]) -> str:
    """The rounds for a summary line ("" for a single round)."""
    if len(table["rounds"]) < 2:
        return ""
    return (
        "; rounds (Parley / better raw beside it): "
        + ", ".join(
            f"{r['parley']:.0f} / {r['raw']:.0f} = {r['ratio']:.2f}x" for r in table["rounds"]
        )
        + f"; the median round ({table['median_round'] + 1}) is the figure"
    )


def pair(raws: Sequence[dict[str, Any]], parleys: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pair each Parley run with the raw runs beside it (raw, Parley 1, raw, Parley 2,
    ..., raw: Parley i sits between raws i and i+1; a last raw run may be missing).

    A round's ratio is against the better of its two raw runs, so a slow raw run never
    helps Parley. The median round (by ratio; the lower middle one for an even count)
    is the figure: on machines that vary +-15-30% from run to run (reference/
    performance.md), one pair can land anywhere in that band."""
    table = []
    for i, parley in enumerate(parleys):
        beside = [r["sent_per_s"] for r in raws[i : i + 2]]
        raw = max(beside)
        table.append(
            {
                "round": i + 1,
                "parley": parley["sent_per_s"],
                "raw": raw,
                "raw_runs_beside": beside,
                "ratio": round(parley["sent_per_s"] / raw, 3) if raw else 0.0,
            }
        )
    order = sorted(range(len(table)), key=lambda i: table[i]["ratio"])
    median = order[(len(order) - 1) // 2]
    return {
        "rounds": table,
        "median_round": median,
        "raws": list(raws[median : median + 2]),
    }


def record_rounds(
    record: dict[str, Any], raws: Sequence[dict[str, Any]], parleys: Sequence[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pair the runs (`pair`), put the median round's Parley run in the record as its
    `parley` (and every round, with several), and return the pairing and that run."""
    table = pair(raws, parleys)
    parley = parleys[table["median_round"]]
    record["parley"] = parley
    if len(parleys) > 1:
        record["rounds"] = table["rounds"]
        record["parley_runs"] = list(parleys)
    return table, parley


def ratio_gate(
    record: dict[str, Any],
    raws: Sequence[dict[str, Any]],
    parley: dict[str, Any],
    *,
    rounds: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Record raw vs Parley (the better raw run is the figure) and return the 0.5x gate.
    With several rounds, `parley` and `raws` are the median round's (`pair`)."""
    raw_figure = max(r["sent_per_s"] for r in raws)
    ratio = parley["sent_per_s"] / raw_figure if raw_figure else 0.0
    record.update(
        {
            "unit": "msg/s",
            "raw_figure": raw_figure,
            "parley_figure": parley["sent_per_s"],
            "ratio": round(ratio, 3),
        }
    )
    if len(rounds) > 1:
        # For the record: the same Parley run against the fastest raw run of all (a
        # round beside a slow raw run can pass where this does not).
        best = max(max(r["raw_runs_beside"]) for r in rounds)
        record["ratio_vs_best_raw"] = round(parley["sent_per_s"] / best, 3) if best else 0.0
    detail = f"{parley['sent_per_s']:.0f} / {raw_figure:.0f} msg/s = {ratio:.2f}x"
    if len(rounds) > 1:
        detail = (
            f"median of {len(rounds)} rounds: {detail} (rounds: "
            + ", ".join(f"{r['ratio']:.2f}x" for r in rounds)
            + f"; against the fastest raw run of all: {record['ratio_vs_best_raw']:.2f}x)"
        )
    return gate("parley >= 0.5x raw", ratio >= 0.5, detail)
