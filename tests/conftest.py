"""The fixtures of handoff.testing and the MCP gateway's tests, and the time each test file takes.

``make test`` runs the files on several workers, each file whole on one worker (``--dist loadfile
--no-loadscope-reorder``: the work goes out in collection order). A long file handed out last
would run alone at the end, so under xdist the files go out longest first, by the durations
measured in ``tests/durations.json`` (new integration files, not measured yet, before them, the
largest first; new unit files after them). Every run prints its slowest files and writes them all
to ``.handoff/test-durations.json``; ``make test-durations`` copies them into
``tests/durations.json``. See tests/file_durations.py. A run without xdist keeps pytest's order.
"""

pytest_plugins = [
    "handoff.testing.fixtures",
    "tests.file_durations",
    "tests.integration.mcp_fixtures",
]
