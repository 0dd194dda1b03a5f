"""Prometheus metrics, rendered by hand in the text exposition format 0.0.4.

Counters: requests by route template, method and status (route templates, never raw
paths, so cardinality stays bounded), ingested events by result and error code (codes
are a closed set), events the verifier checked (read from it at scrape time). Gauges
are read at scrape time from the store's in-memory counts and the stream hub.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


class Metrics:
    """In-process counters plus gauge callbacks."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.ingested: Counter[tuple[str, str]] = Counter()
        self.batches = 0
        self.stream_disconnects: Counter[str] = Counter()
        self.rate_limited = 0
        #: Events received from peers, by path ("stream" or "sync") and result.
        self.federated: Counter[tuple[str, str]] = Counter()
        #: Anti-entropy runs by outcome ("ok" or an error code), and events offered.
        self.syncs: Counter[str] = Counter()
        self.offered = 0
        #: Held body-less events completed by the repair step (spec 0005 #body-repair).
        self.bodies_repaired = 0
        self._gauges: dict[str, tuple[str, Callable[[], int]]] = {}
        self._counters: dict[str, tuple[str, Callable[[], int]]] = {}
        self._labeled: dict[str, tuple[str, str, Callable[[], Mapping[str, int]]]] = {}
        self._multi: dict[
            str, tuple[str, tuple[str, ...], Callable[[], Mapping[tuple[str, ...], int]]]
        ] = {}
        self._summaries: dict[
            str, tuple[str, str, Callable[[], Mapping[str, tuple[float, int]]]]
        ] = {}

    def gauge(self, name: str, help_text: str, read: Callable[[], int]) -> None:
        """Register a gauge whose value is read when ``/metrics`` is scraped."""
        self._gauges[name] = (help_text, read)

    def counter(self, name: str, help_text: str, read: Callable[[], int]) -> None:
        """Register a counter kept elsewhere (e.g. by the verifier), read at scrape time."""
        self._counters[name] = (help_text, read)

    def labeled_counter(
        self, name: str, help_text: str, label: str, read: Callable[[], Mapping[str, int]]
    ) -> None:
        """Register a counter with one label kept elsewhere: ``read`` maps each value
        of ``label`` (a closed set) to its count, read at scrape time."""
        self._labeled[name] = (help_text, label, read)

    def multi_counter(
        self,
        name: str,
        help_text: str,
        labels: tuple[str, ...],
        read: Callable[[], Mapping[tuple[str, ...], int]],
    ) -> None:
        """Register a counter with several labels kept elsewhere: ``read`` maps each
        tuple of label values (bounded sets) to its count, read at scrape time."""
        self._multi[name] = (help_text, labels, read)

    def summary(
        self,
        name: str,
        help_text: str,
        label: str,
        read: Callable[[], Mapping[str, tuple[float, int]]],
    ) -> None:
        """Register a summary without quantiles (``_sum`` and ``_count``) per value of
        ``label``: ``read`` maps each value to ``(sum, count)``, read at scrape time."""
        self._summaries[name] = (help_text, label, read)

    def count_request(self, route: str, method: str, status: int) -> None:
        self.requests[(route, method, status)] += 1

    def count_event(self, status: str, code: str = "") -> None:
        self.ingested[(status, code)] += 1

    def render(self) -> str:
        lines: list[str] = [
            "# HELP murmur_http_requests_total HTTP requests by route, method and status.",
            "# TYPE murmur_http_requests_total counter",
        ]
        for (route, method, status), n in sorted(self.requests.items()):
            labels = _labels([("route", route), ("method", method), ("status", str(status))])
            lines.append(f"murmur_http_requests_total{labels} {n}")
        lines += [
            "# HELP murmur_events_ingested_total Ingested events by result and error code.",
            "# TYPE murmur_events_ingested_total counter",
        ]
        for (result, code), n in sorted(self.ingested.items()):
            pairs = [("result", result)] + ([("code", code)] if code else [])
            lines.append(f"murmur_events_ingested_total{_labels(pairs)} {n}")
        lines += [
            "# HELP murmur_ingest_batches_total Ingest batches committed.",
            "# TYPE murmur_ingest_batches_total counter",
            f"murmur_ingest_batches_total {self.batches}",
            "# HELP murmur_rate_limited_total Requests refused with 429.",
            "# TYPE murmur_rate_limited_total counter",
            f"murmur_rate_limited_total {self.rate_limited}",
            "# HELP murmur_stream_disconnects_total Stream subscribers dropped, by reason.",
            "# TYPE murmur_stream_disconnects_total counter",
        ]
        for reason, n in sorted(self.stream_disconnects.items()):
            lines.append(f"murmur_stream_disconnects_total{_labels([('reason', reason)])} {n}")
        lines += [
            "# HELP murmur_federation_events_total Events received from peers, by path and result.",
            "# TYPE murmur_federation_events_total counter",
        ]
        for (path, result), n in sorted(self.federated.items()):
            labels = _labels([("path", path), ("result", result)])
            lines.append(f"murmur_federation_events_total{labels} {n}")
        lines += [
            "# HELP murmur_sync_runs_total Anti-entropy runs with peers, by outcome.",
            "# TYPE murmur_sync_runs_total counter",
        ]
        for outcome, n in sorted(self.syncs.items()):
            lines.append(f"murmur_sync_runs_total{_labels([('outcome', outcome)])} {n}")
        lines += [
            "# HELP murmur_sync_offered_total Events offered to peers that lacked them.",
            "# TYPE murmur_sync_offered_total counter",
            f"murmur_sync_offered_total {self.offered}",
            "# HELP murmur_bodies_repaired_total Missing bodies completed from peers' copies.",
            "# TYPE murmur_bodies_repaired_total counter",
            f"murmur_bodies_repaired_total {self.bodies_repaired}",
        ]
        for name, (help_text, read) in sorted(self._counters.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {read()}"]
        for name, (help_text, label, values) in sorted(self._labeled.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            for value, n in sorted(values().items()):
                lines.append(f"{name}{_labels([(label, value)])} {n}")
        for name, (help_text, label_names, counts) in sorted(self._multi.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            for label_values, n in sorted(counts().items()):
                pairs = list(zip(label_names, label_values, strict=True))
                lines.append(f"{name}{_labels(pairs)} {n}")
        for name, (help_text, label, sums) in sorted(self._summaries.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} summary"]
            for value, (total, n) in sorted(sums().items()):
                lines.append(f"{name}_sum{_labels([(label, value)])} {total:.6f}")
                lines.append(f"{name}_count{_labels([(label, value)])} {n}")
        for name, (help_text, read) in sorted(self._gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read()}"]
        return "\n".join(lines) + "\n"
