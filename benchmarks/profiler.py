"""Profiles of the operator under the bench's load (``run.py --profile DIR``): where its CPU goes
(py-spy, sampling the live process) and where its bytes go (tracemalloc snapshots, taken on
SIGUSR2 through ``profiling/sitecustomize.py``). ``python benchmarks/profiler.py DIR`` prints
the summary that docs/performance.md quotes.

py-spy and memray are in the ``profile`` extra (``pip install -e '.[profile]'``); py-spy needs
the right to ptrace the operator (the same user, and ``kernel.yama.ptrace_scope`` 0 or 1 with
the operator its child, or CAP_SYS_PTRACE).
"""

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRAMES = 8  # frames kept per traced allocation


def operator_env(folder: Path) -> dict[str, str]:
    """What the operator's environment needs for snapshots into ``folder``."""
    path = os.pathsep.join(p for p in (str(HERE / "profiling"), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "HANDOFF_TRACEMALLOC": str(FRAMES),
            "HANDOFF_TRACEMALLOC_OUT": str(folder / "heap")}  # fmt: skip


class Profiler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._spy: subprocess.Popen[bytes] | None = None
        self._snapshots = 0

    def cpu(self, pid: int, label: str) -> None:
        """Sample ``pid`` from now until ``stop``, into ``label``.txt (collapsed stacks)."""
        self.stop()
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if spy is None:
            print("  (py-spy is not installed: no CPU profile)", flush=True)
            return
        out = self.folder / f"{label}.txt"
        self._spy = subprocess.Popen(  # noqa: S603 - our own tool on our own child
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "100",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / f"{label}.py-spy.log").open("wb"),
        )

    def stop(self) -> None:
        if self._spy is not None:
            self._spy.send_signal(signal.SIGINT)
            try:
                self._spy.wait(30)
            except subprocess.TimeoutExpired:
                self._spy.kill()
            self._spy = None

    def trace(self, pid: int) -> None:
        """Start tracing allocations in ``pid`` (the snapshots compare against this moment)."""
        os.kill(pid, signal.SIGUSR1)
        time.sleep(1)

    def heap(self, pid: int, label: str) -> None:
        """A tracemalloc snapshot of ``pid``, renamed ``label``.heap."""
        written = self.folder / f"heap.{self._snapshots}"
        self._snapshots += 1
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 120
        size = -1
        while time.monotonic() < deadline:  # written when its size stops changing
            time.sleep(0.5)
            if written.exists() and written.stat().st_size == size:
                written.rename(self.folder / f"{label}.heap")
                return
            size = written.stat().st_size if written.exists() else -1


def _ours(frame: str) -> bool:
    return "handoff" in frame or "kopf" in frame


CATEGORIES = (  # the first that a sample's stack matches names it
    ("Redis (outbox)", ("redis/",)),
    ("API server calls (adapters/kube.py, aiohttp)", ("handoff/adapters/kube.py", "aiohttp/")),
    ("domain (classify, decide, records)", ("handoff/domain/",)),
    ("Handoff controller, the rest", ("handoff/controller/requests.py",)),
    ("kopf around the handler (bodies, loggers, causes, queues)", ("kopf/",)),
)


def category(frames: list[str]) -> str:
    joined = ";".join(frames)
    for name, markers in CATEGORIES:
        if any(marker in joined for marker in markers):
            return name
    return "other (the event loop, sockets, start-up)"


def summarize_cpu(path: Path, top: int = 25) -> None:
    """Share of samples by function: self (the frame running), inclusive, and by category."""
    selfs: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        selfs[frames[-1]] += n
        kinds[category(frames)] += n
        for frame in set(frames):
            incl[_area(frame)] += n
    print(f"\n{path.name}: {total} samples")
    print("  by category:")
    for kind, n in kinds.most_common():
        print(f"    {100 * n / total:5.1f}%  {kind}")
    print("  self:")
    for frame, n in selfs.most_common(top):
        print(f"    {100 * n / total:5.1f}%  {frame}")
    print("  inclusive, by file (Handoff and kopf):")
    for area, n in [(a, n) for a, n in incl.most_common() if _ours(a)][:top]:
        print(f"    {100 * n / total:5.1f}%  {area}")


def _area(frame: str) -> str:
    """kopf/_core/reactor/processing.py or handoff/controller/requests.py, from a frame."""
    for marker in ("site-packages/", "operator/", "lib/python3"):
        if marker in frame:
            tail = frame.split(marker, 1)[1]
            return tail.split(":")[0].rstrip(")")
    return frame


def summarize_heap(before: Path | None, after: Path, count: int, top: int = 25) -> None:
    """What grew between two snapshots (or since tracing began), by file and line, per request
    (``count`` of them)."""
    new = tracemalloc.Snapshot.load(str(after))
    old = tracemalloc.Snapshot.load(str(before)) if before else tracemalloc.Snapshot([], 8)
    grown = sum(stat.size_diff for stat in new.compare_to(old, "filename"))
    print(f"\n{before.name if before else 'start'} -> {after.name}: {grown / 1e6:.1f} MB traced growth, "
          f"{grown / count:.0f} B per request")  # fmt: skip
    print("  by file:")
    for stat in new.compare_to(old, "filename")[:top]:
        name = _area(str(stat.traceback[0].filename))
        print(f"    {stat.size_diff / count:8.0f} B/request  {stat.count_diff:+8d} blocks  {name}")
    print("  by line (where allocated):")
    for stat in new.compare_to(old, "lineno")[:top]:
        frame = stat.traceback[0]
        print(
            f"    {stat.size_diff / count:8.0f} B/request  {_area(frame.filename)}:{frame.lineno}"
        )
    print("  by the innermost handoff/kopf frame of each allocation:")
    owners: collections.Counter[str] = collections.Counter()
    for stat in new.compare_to(old, "traceback"):
        owner = next(
            (f"{_area(f.filename)}:{f.lineno}" for f in stat.traceback if _ours(f.filename)), "?"
        )
        owners[owner] += stat.size_diff
    for owner, size in owners.most_common(top):
        print(f"    {size / count:8.0f} B/request  {owner}")


def main() -> int:
    folder = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for path in sorted(folder.glob("*.txt")):
        summarize_cpu(path)
    idle, pending, rearmed = (folder / f"{n}.heap" for n in ("1-idle", "2-pending", "3-rearmed"))
    if idle.exists() and pending.exists():
        summarize_heap(idle, pending, count)
    if rearmed.exists():  # traced from the restart on: what re-arming them left
        summarize_heap(None, rearmed, count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
