"""`make bench` (run.py without --only) measures every part: the cluster's rows were once left out
of it for a whole roadmap because a condition read "not classification" as "only gateway"."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from common import CLUSTER, PARTS, parts


def test_make_bench_measures_every_part() -> None:
    assert parts(None) == ("classification", "decisions", "scale", "history", "gateway")


def test_cluster_is_its_three_rows_on_one_control_plane() -> None:
    assert parts("cluster") == CLUSTER == ("decisions", "scale", "history")


def test_one_part_alone() -> None:
    for part in PARTS:
        assert parts(part) == (part,)
    assert not set(CLUSTER) & set(parts("gateway"))
    assert not set(CLUSTER) & set(parts("classification"))
