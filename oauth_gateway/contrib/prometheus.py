"""A ``prometheus_client`` collector for a :class:`~oauth_gateway.TokenManager`'s metrics.

Needs the ``prometheus`` extra (``pip install 'oauth-gateway[prometheus]'``)::

    from prometheus_client import REGISTRY
    from oauth_gateway.contrib.prometheus import OAuthGatewayCollector

    REGISTRY.register(OAuthGatewayCollector(manager))

Every scrape reads :meth:`TokenManager.get_metrics` once. The series are those of
:func:`oauth_gateway.metrics.prometheus_text` (the stdlib-only text format): one counter
per metric with a ``server`` label, and the ``active_tokens`` gauge. Without
``prometheus_client``, serve ``prometheus_text(manager.get_metrics())`` instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, Union

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..metrics import COUNTERS

if TYPE_CHECKING:  # pragma: no cover
    from ..manager import TokenManager

__all__ = ("OAuthGatewayCollector",)

#: One line of help per counter; a counter missing here gets a generic line.
_HELP = {
    "token_acquisitions_total": "Token requests finished (success or failure).",
    "token_acquisitions_success": "Token requests that returned a token.",
    "token_acquisitions_failure": "Token requests that failed.",
    "token_cache_hits": "get_token calls answered from the cache.",
    "token_cache_misses": "get_token calls that needed a token request or waited for one.",
    "token_refreshes": "Tokens replaced by a newer one.",
    "token_retries": "Token request retries after transient failures.",
    "token_refresh_failures_served_from_cache": "Failed refreshes answered with the still valid cached token.",
    "token_fail_fast": "Calls answered with the last error during the failure cool-down.",
    "token_revocations": "Tokens revoked (RFC 7009).",
    "token_revocation_failures": "Revocation requests that failed.",
    "background_refreshes": "Tokens replaced by the background worker while the old one was still served.",
    "background_refresh_failures": "Background refreshes that failed (the old token is served until it expires).",
}

_Family = Union[CounterMetricFamily, GaugeMetricFamily]


class OAuthGatewayCollector:
    """Exposes one manager's token metrics to ``prometheus_client``. Thread-safe.

    Args:
        manager: the token manager whose :meth:`~oauth_gateway.TokenManager.get_metrics` is read.
        prefix: prepended to every metric name.
    """

    def __init__(self, manager: TokenManager, prefix: str = "oauth_gateway_"):
        self.manager = manager
        self.prefix = prefix

    def describe(self) -> Iterator[_Family]:
        """Yield the metric families without samples (so registering reads no metrics)."""
        return self._families({})

    def collect(self) -> Iterator[_Family]:
        """Yield the counters, labelled by ``server``, and the ``active_tokens`` gauge."""
        return self._families(self.manager.get_metrics())

    def _families(self, snapshot: Dict[str, Any]) -> Iterator[_Family]:
        servers = sorted(snapshot.get("servers", {}).items())
        for name in COUNTERS + ("token_cache_hits",):
            family = CounterMetricFamily(
                self.prefix + name, _HELP.get(name, "oauth_gateway counter %s." % name), labels=["server"]
            )
            for server, row in servers:
                family.add_metric([server], row.get(name, 0))
            yield family
        active = GaugeMetricFamily(self.prefix + "active_tokens", "Cached tokens that are not expired.")
        if snapshot:
            active.add_metric([], snapshot.get("active_tokens", 0))
        yield active

    def __repr__(self) -> str:
        return "OAuthGatewayCollector(%r, prefix=%r)" % (self.manager, self.prefix)
