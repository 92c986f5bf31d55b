"""Rounds of `parley bench dispatch-sms` and `dispatch-email` (bench/rounds.py):
each Parley run is compared with the better raw run beside it, and the median round is
the figure."""

from __future__ import annotations

import argparse

import pytest

from parley.bench import rounds as paired
from parley.bench.rounds import pair as rounds
from parley.bench.rounds import ratio_gate


def _runs(*figures: float) -> list[dict[str, float]]:
    return [{"sent_per_s": f} for f in figures]


def test_each_round_takes_the_better_raw_beside_it_and_the_median_round_counts() -> None:
    raws = _runs(100, 80, 120, 90)  # raw, P1, raw, P2, raw, P3, raw
    parleys = _runs(50, 30, 54)
    table = rounds(raws, parleys)
    assert [r["raw"] for r in table["rounds"]] == [100, 120, 120]
    assert [r["ratio"] for r in table["rounds"]] == [0.5, 0.25, 0.45]
    assert table["median_round"] == 2  # 0.45 sits between 0.25 and 0.5
    assert table["raws"] == _runs(120, 90)
    record: dict[str, object] = {}
    verdict = ratio_gate(record, table["raws"], parleys[2], rounds=table["rounds"])
    assert not verdict["passed"] and record["ratio"] == 0.45
    assert "median of 3 rounds" in verdict["detail"]


def test_a_slow_raw_run_beside_some_rounds_is_visible_in_the_record() -> None:
    # One fast raw run, then a slow machine: two of three rounds pass against their own
    # neighbours, so the median passes; the record says what the fastest raw run gives.
    raws, parleys = _runs(5200, 2700, 2700, 2700), _runs(1400, 1400, 1400)
    table = rounds(raws, parleys)
    assert [r["ratio"] for r in table["rounds"]] == [0.269, 0.519, 0.519]
    record: dict[str, object] = {}
    median = parleys[table["median_round"]]
    verdict = ratio_gate(record, table["raws"], median, rounds=table["rounds"])
    assert verdict["passed"] and record["ratio"] == 0.519
    assert record["ratio_vs_best_raw"] == 0.269
    assert "against the fastest raw run of all: 0.27x" in verdict["detail"]


def test_an_even_count_takes_the_lower_middle_round_and_one_round_is_as_before() -> None:
    table = rounds(_runs(100, 100, 100), _runs(60, 40))
    assert table["median_round"] == 1  # ratios 0.6 and 0.4: the lower one
    single = rounds(_runs(100, 200), _runs(90))  # raw before and after one Parley run
    assert single["rounds"][0]["ratio"] == 0.45 and single["raws"] == _runs(100, 200)
    lone = rounds(_runs(100), _runs(90))  # --raw-runs 1: no raw run after it
    assert lone["rounds"][0]["raw_runs_beside"] == [100]


def test_round_options_default_to_three_rounds_one_for_a_smoke_run() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    paired.add_round_options(parser)
    for argv, expected in (([], 3), (["--quick"], 1), (["--quick", "--rounds", "2"], 2)):
        args = parser.parse_args(argv)
        paired.settle_round_options(parser, args)
        assert args.rounds == expected, argv
    with pytest.raises(SystemExit):
        paired.settle_round_options(parser, parser.parse_args(["--rounds", "0"]))


def test_the_record_carries_the_median_round_and_with_several_every_round() -> None:
    record: dict[str, object] = {}
    parleys = _runs(50, 40, 45)
    table, parley = paired.record_rounds(record, _runs(100, 100, 100, 100), parleys)
    assert parley is parleys[2] and record["parley"] is parleys[2]
    assert record["rounds"] == table["rounds"] and record["parley_runs"] == parleys
    assert "rounds (Parley / better raw beside it): 50 / 100 = 0.50x" in paired.rounds_summary(
        table
    )
    single: dict[str, object] = {}
    table, _ = paired.record_rounds(single, _runs(100, 100), _runs(50))
    assert "rounds" not in single and paired.rounds_summary(table) == ""
