"""The fixtures of handoff.testing, and the order in which pytest-xdist hands out the files.

``make test`` runs the files on several workers, each file whole on one worker (``--dist loadfile
--no-loadscope-reorder``: the work goes out in collection order). A long file handed out last
would run alone at the end, so under xdist the integration files go first, the largest (a fair
guess at the longest) first, and the quick unit files fill the gaps at the end. New files need
no entry anywhere. A run without xdist keeps pytest's own order.
"""

import os
from pathlib import Path

import pytest

pytest_plugins = ["handoff.testing.fixtures"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    sizes: dict[Path, int] = {}

    def cost(item: pytest.Item) -> tuple[int, int]:
        path = item.path
        if path not in sizes:
            sizes[path] = path.stat().st_size
        return (0 if "integration" in path.parts else 1, -sizes[path])

    items.sort(key=cost)  # stable: a file's tests keep their order
