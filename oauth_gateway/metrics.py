"""Thread-safe counters for token operations, with the seed gateway's metric names.

Cache hits are counted on the lock-free hot path with ``itertools.count`` objects,
whose ``next()`` is atomic under the GIL; every other counter changes under one lock.
The ``max_wait_seconds`` gauge (the longest ``get_token`` call that went past the cache
hit) is measured on the slow path only, so a hit pays nothing for it.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Dict, List, Optional, Tuple

__all__ = ("Metrics", "prometheus_text")

#: Counters kept per server and in total (the seed's names first).
COUNTERS = (
    "token_acquisitions_total",
    "token_acquisitions_success",
    "token_acquisitions_failure",
    "token_cache_misses",
    "token_refreshes",
    "token_retries",
    "token_refresh_failures_served_from_cache",
    "token_fail_fast",
    "token_revocations",
    "token_revocation_failures",
    "cache_errors",
    "background_refreshes",
    "background_refresh_failures",
)


def _count_value(counter: itertools.count[int]) -> int:
    """Read an ``itertools.count`` without advancing it."""
    return int(repr(counter)[6:-1])


class Metrics:
    """Counters for one :class:`~oauth_gateway.TokenManager`. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: Dict[str, Dict[str, float]] = {}
        self._hits: Dict[Tuple[str, str], itertools.count[int]] = {}
        # Per token provider (OAUTH_PROVIDER): [total, success, failure].
        self._providers: Dict[str, List[int]] = {}
        self._max_wait: Dict[str, float] = {}

    def hit_counter(self, key: Tuple[str, str]) -> itertools.count[int]:
        """Return the hit counter of a cache key, made once and kept across refreshes."""
        counter = self._hits.get(key)
        if counter is None:
            with self._lock:
                counter = self._hits.setdefault(key, itertools.count())
        return counter

    def add(self, server_name: str, name: str, amount: float = 1) -> None:
        """Add to one counter of a server."""
        with self._lock:
            row = self._servers.get(server_name)
            if row is None:
                row = self._servers[server_name] = dict.fromkeys(COUNTERS + ("latency_ms_sum",), 0)
            row[name] += amount

    def acquisition(self, server_name: str, success: bool, latency_ms: float, provider: Optional[str] = None) -> None:
        """Record one finished token request, also under its token provider when named."""
        with self._lock:
            if provider is not None:
                counts = self._providers.setdefault(provider, [0, 0, 0])
                counts[0] += 1
                counts[1 if success else 2] += 1
            row = self._servers.get(server_name)
            if row is None:
                row = self._servers[server_name] = dict.fromkeys(COUNTERS + ("latency_ms_sum",), 0)
            row["token_acquisitions_total"] += 1
            row["token_acquisitions_success" if success else "token_acquisitions_failure"] += 1
            row["latency_ms_sum"] += latency_ms

    def waited(self, server_name: str, seconds: float) -> None:
        """Record how long a ``get_token`` call past the cache hit took; the gauge keeps the longest."""
        with self._lock:
            if seconds > self._max_wait.get(server_name, 0.0):
                self._max_wait[server_name] = seconds

    def reset_after_fork(self) -> None:
        """Give a forked child a fresh lock."""
        self._lock = threading.Lock()

    def snapshot(self, active_tokens: int) -> Dict[str, Any]:
        """Return every metric: the totals at the top level, a ``servers`` breakdown and a
        ``providers`` one (token acquisitions per ``OAUTH_PROVIDER``)."""
        with self._lock:
            rows = {name: dict(row) for name, row in self._servers.items()}
            providers = {
                name: {
                    "token_acquisitions_total": counts[0],
                    "token_acquisitions_success": counts[1],
                    "token_acquisitions_failure": counts[2],
                }
                for name, counts in self._providers.items()
            }
            max_wait = dict(self._max_wait)
            hits_by_server: Dict[str, int] = {}
            for key, hits in self._hits.items():
                hits_by_server[key[0]] = hits_by_server.get(key[0], 0) + _count_value(hits)
        servers = {}
        totals: Dict[str, float] = dict.fromkeys(COUNTERS + ("latency_ms_sum",), 0.0)
        for name in set(rows) | set(hits_by_server) | set(max_wait):
            row = rows.get(name) or dict.fromkeys(COUNTERS + ("latency_ms_sum",), 0.0)
            row["token_cache_hits"] = hits_by_server.get(name, 0)
            for counter in totals:
                totals[counter] += row[counter]
            servers[name] = _derived(row)
            servers[name]["max_wait_seconds"] = round(max_wait.get(name, 0.0), 6)
        totals["token_cache_hits"] = sum(hits_by_server.values())
        result = _derived(totals)
        result["max_wait_seconds"] = round(max(max_wait.values(), default=0.0), 6)
        result["active_tokens"] = active_tokens
        result["servers"] = servers
        result["providers"] = providers
        return result


def _derived(row: Dict[str, float]) -> Dict[str, Any]:
    out: Dict[str, Any] = {name: int(row[name]) for name in COUNTERS}
    out["token_cache_hits"] = int(row["token_cache_hits"])
    lookups = out["token_cache_hits"] + out["token_cache_misses"]
    total = out["token_acquisitions_total"]
    out["cache_hit_ratio"] = round(out["token_cache_hits"] / lookups, 3) if lookups else 0.0
    out["success_rate"] = round(out["token_acquisitions_success"] / total, 3) if total else 0.0
    out["avg_latency_ms"] = round(row["latency_ms_sum"] / total, 1) if total else 0.0
    return out


def prometheus_text(metrics: Dict[str, Any], prefix: str = "oauth_gateway_") -> str:
    """Render a :meth:`Metrics.snapshot` in the Prometheus text exposition format."""
    lines = []
    names = COUNTERS + ("token_cache_hits",)
    for name in names:
        # Counter series end in "_total" once, as prometheus_client writes them.
        metric = prefix + (name if name.endswith("_total") else name + "_total")
        lines.append("# TYPE %s counter" % metric)
        for server, row in sorted(metrics.get("servers", {}).items()):
            lines.append('%s{server="%s"} %d' % (metric, _label(server), row[name]))
    lines.append("# TYPE %sactive_tokens gauge" % prefix)
    lines.append("%sactive_tokens %d" % (prefix, metrics.get("active_tokens", 0)))
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
