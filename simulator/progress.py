"""The live view for people: connected vehicles, messages per second, errors, latencies.

:class:`LiveView` redraws a small table on stderr (rich) when stderr is a terminal;
:class:`LineView` prints one line every few seconds otherwise; :class:`NoView` is silent.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from simulator.stats import Histogram


class View(Protocol):
    def start(self) -> None: ...

    def update(self, merged: Mapping[str, Any], *, elapsed: float, phase: str) -> None: ...

    def stop(self) -> None: ...


class Rates:
    """Per-second rates of the counters over the last ``window`` seconds (workers report once
    a second, so a shorter window would flicker)."""

    def __init__(self, *, window: float = 5.0) -> None:
        self.window = window
        self._history: deque[tuple[float, dict[str, int]]] = deque()

    def update(self, counts: Mapping[str, int], *, t: float | None = None) -> dict[str, float]:
        t = time.monotonic() if t is None else t
        history = self._history
        history.append((t, dict(counts)))
        while len(history) > 2 and t - history[1][0] >= self.window:
            history.popleft()
        t0, first = history[0]
        if t - t0 <= 0:
            return {}
        return {k: (counts.get(k, 0) - v) / (t - t0) for k, v in first.items()}


def status_fields(
    merged: Mapping[str, Any], rates: Mapping[str, float], *, total: int
) -> list[tuple[str, str]]:
    """(label, value) pairs shown by the views. Pure."""
    links: Mapping[str, int] = merged.get("links", {})
    counts: Mapping[str, int] = merged.get("counts", {})
    hist = merged.get("hist", {})
    handshake = Histogram(hist.get("handshake", {})).summary()
    ack = Histogram(hist.get("publish_ack", {})).summary()
    errors: Mapping[str, int] = merged.get("errors", {})
    error_text = ", ".join(f"{k} {v}" for k, v in sorted(errors.items(), key=lambda i: -i[1]))
    return [
        ("connected", f"{links.get('online', 0)} / {total}"),
        ("connecting", str(links.get("connecting", 0) + links.get("backoff", 0))),
        ("failed", str(links.get("gave_up", 0))),
        ("published", f"{counts.get('published', 0)}  ({rates.get('published', 0):,.0f}/s)"),
        ("acked", f"{counts.get('acked', 0)}  ({rates.get('acked', 0):,.0f}/s)"),
        (
            "commands",
            f"{counts.get('commands_received', 0)} in, "
            f"{counts.get('commands_answered', 0)} answered",
        ),
        ("handshake ms", f"p50 {_ms(handshake['p50'])}  p99 {_ms(handshake['p99'])}"),
        ("publish→ack ms", f"p50 {_ms(ack['p50'])}  p99 {_ms(ack['p99'])}"),
        ("errors", error_text or "none"),
        (
            "memory",
            f"{merged.get('rss_kb', 0) / 1024:,.0f} MiB in {merged.get('workers', 0)} processes",
        ),
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


class NoView:
    def start(self) -> None:
        pass

    def update(self, merged: Mapping[str, Any], *, elapsed: float, phase: str) -> None:
        pass

    def stop(self) -> None:
        pass


class LineView:
    """One line on stderr every ``every`` seconds (for logs and non-terminals)."""

    def __init__(self, *, total: int, every: float = 10.0) -> None:
        self.total = total
        self.every = every
        self.rates = Rates()
        self._next = 0.0

    def start(self) -> None:
        self._next = time.monotonic() + self.every

    def update(self, merged: Mapping[str, Any], *, elapsed: float, phase: str) -> None:
        rates = self.rates.update(merged.get("counts", {}))
        if time.monotonic() < self._next:
            return
        self._next += self.every
        fields = status_fields(merged, rates, total=self.total)
        text = "; ".join(f"{k} {v}" for k, v in fields[:5] + fields[8:9])
        print(f"fleetgate sim: {elapsed:6.1f}s {phase}: {text}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        pass


class LiveView:
    """A rich table redrawn in place on stderr."""

    def __init__(self, *, total: int, title: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.total = total
        self.title = title
        self.rates = Rates()
        self.live = Live(console=Console(stderr=True), refresh_per_second=4, transient=False)

    def start(self) -> None:
        self.live.start()

    def update(self, merged: Mapping[str, Any], *, elapsed: float, phase: str) -> None:
        from rich.table import Table

        rates = self.rates.update(merged.get("counts", {}))
        table = Table(title=f"{self.title} — {phase}, {elapsed:,.0f} s", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for label, value in status_fields(merged, rates, total=self.total):
            table.add_row(label, value)
        self.live.update(table)

    def stop(self) -> None:
        self.live.stop()


def make_view(*, total: int, title: str, enabled: bool) -> View:
    if not enabled:
        return NoView()
    if sys.stderr.isatty():
        return LiveView(total=total, title=title)
    return LineView(total=total)
