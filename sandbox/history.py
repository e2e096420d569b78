"""Thirty days of utilisation history, written into Prometheus's own TSDB before it starts.

The resource loop judges waste on 30 days of data, and a drill cannot wait 30
days. So the sandbox writes the history as OpenMetrics text and has Debian's
``promtool tsdb create-blocks-from openmetrics`` turn it into TSDB blocks in the
data directory Prometheus is about to open: the sweep's PromQL then runs against
real blocks on a real server, with no fake query layer. ``--max-block-duration=720h``
keeps 30 days in one or two blocks instead of hundreds of two-hour ones, which is
what makes a 10,000-series backfill take seconds rather than minutes.

Each series is one sample per hour, like the recording rule the loop reads in
production; shapes are deterministic (seeded), so figures such as the 95th
percentile are the same on every run.
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from suture.errors import ConfigError

METRIC = "suture:utilisation:ratio1h"
HOUR = 3600
DAYS = 31
"""One day more than the window, so a query made minutes after the backfill still sees 30 full days."""

Shape = Callable[[int, random.Random], float]
"""Hour index since the first sample (0 = oldest), and a seeded generator → a ratio in 0..1."""


def idle(level: float = 0.035) -> Shape:
    """Barely used: a few percent, with noise that never reaches the idle bar."""
    return lambda _hour, rng: max(0.0, level + rng.uniform(-0.008, 0.008))


def busy(low: float = 0.3, high: float = 0.55) -> Shape:
    """In use all day with a diurnal rhythm, never bursting past the burst bar."""
    return lambda hour, rng: (
        low + (high - low) * (0.5 + 0.5 * math.sin(2 * math.pi * hour / 24)) + rng.uniform(-0.02, 0.02)
    )


def nightly(level: float = 0.02, burst: float = 0.9, at_hour: int = 2) -> Shape:
    """A batch job: idle all day, flat out for one hour every night."""
    return lambda hour, rng: burst if hour % 24 == at_hour else max(0.0, level + rng.uniform(-0.01, 0.01))


@dataclass(frozen=True)
class Series:
    """One workload's utilisation of one resource."""

    kind: str
    scope: str
    name: str
    resource: str
    shape: Shape
    days: float = DAYS

    def labels(self) -> str:
        return f'kind="{self.kind}",name="{self.name}",resource="{self.resource}",scope="{self.scope}"'


def openmetrics(series: Iterable[Series], end: int, seed: int = 7) -> Iterator[str]:
    """The history as OpenMetrics lines, samples hourly up to ``end`` (epoch seconds)."""
    yield f"# TYPE {METRIC} gauge\n"
    for index, item in enumerate(series):
        rng = random.Random(seed * 100003 + index)
        hours = int(item.days * 24)
        labels = item.labels()
        for hour in range(hours):
            at = end - (hours - 1 - hour) * HOUR
            value = min(1.0, max(0.0, item.shape(hour, rng)))
            yield f"{METRIC}{{{labels}}} {value:.4f} {at}\n"
    yield "# EOF\n"


def promtool() -> str:
    found = shutil.which("promtool") or shutil.which("/usr/bin/promtool")
    if found is None:
        raise ConfigError("promtool was not found; it comes with `apt-get install prometheus`")
    return found


def backfill(series: Iterable[Series], tsdb_dir: Path, end: int, scratch: Path) -> Path:
    """Write ``series`` as TSDB blocks into ``tsdb_dir`` (Prometheus's ``--storage.tsdb.path``).

    Raises:
        ConfigError: promtool is missing.
        subprocess.CalledProcessError: promtool refused the input (its output says why).
    """
    scratch.mkdir(parents=True, exist_ok=True)
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    source = scratch / "utilisation.om"
    with source.open("w") as out:
        out.writelines(openmetrics(series, end))
    subprocess.run(
        [
            promtool(),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=720h",
            str(source),
            str(tsdb_dir),
        ],
        check=True,
        capture_output=True,
    )
    source.unlink()
    return tsdb_dir
