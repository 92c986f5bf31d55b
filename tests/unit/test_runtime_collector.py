"""The worker's garbage-collector setting (runtime.collect_less_often)."""

from __future__ import annotations

import gc

from parley import runtime


def test_young_collections_run_less_often_in_a_worker() -> None:
    before = gc.get_threshold()
    try:
        runtime.collect_less_often()
        young, *_ = gc.get_threshold()
        assert young == runtime.YOUNG_COLLECTION_THRESHOLD > before[0]
    finally:
        gc.set_threshold(*before)
