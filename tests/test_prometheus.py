"""Prometheus: the prometheus_client collector and the stdlib text format, read by the real parser."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import oauth_gateway as og
from oauth_gateway.contrib.prometheus import OAuthGatewayCollector
from oauth_gateway.metrics import COUNTERS, prometheus_text

ODD = 'odd "name" \\ with\nnewline'


@pytest.fixture
def busy_manager(manager, auth_server, make_block):
    """A manager with traffic for three servers: hits, a failure, a refresh."""
    good = og.OAuthConfig.from_dict(make_block(auth_server))
    bad = og.OAuthConfig.from_dict(make_block(auth_server, OAUTH_CLIENT_SECRET="wrong secret value"))
    for _ in range(3):
        manager.get_token("oauth-api", good)
    manager.refresh("oauth-api", good)
    manager.get_token(ODD, good)
    with pytest.raises(og.InvalidClient):
        manager.get_token("broken", bad)
    return manager


def _family_name(name):
    """The family name the parser gives a counter: without its ``_total`` suffix."""
    return "oauth_gateway_" + (name[: -len("_total")] if name.endswith("_total") else name)


def _families(text):
    return {family.name: family for family in text_string_to_metric_families(text)}


def _samples(family):
    return sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in family.samples)


def test_the_collector_reports_every_counter_per_server(busy_manager):
    registry = CollectorRegistry()
    registry.register(OAuthGatewayCollector(busy_manager))
    families = _families(generate_latest(registry).decode("utf-8"))
    snapshot = busy_manager.get_metrics()

    assert set(families) == {_family_name(name) for name in COUNTERS + ("token_cache_hits", "active_tokens")}
    for name in COUNTERS + ("token_cache_hits",):
        family = families[_family_name(name)]
        assert family.type == "counter"
        values = {s.labels["server"]: s.value for s in family.samples}
        assert values == {server: row[name] for server, row in snapshot["servers"].items()}, name
    assert families["oauth_gateway_active_tokens"].type == "gauge"
    assert _samples(families["oauth_gateway_active_tokens"]) == [("oauth_gateway_active_tokens", (), 2.0)]
    hits = {s.labels["server"]: s.value for s in families["oauth_gateway_token_cache_hits"].samples}
    assert hits == {"oauth-api": 2.0, ODD: 0.0, "broken": 0.0}
    failures = {s.labels["server"]: s.value for s in families["oauth_gateway_token_acquisitions_failure"].samples}
    assert failures == {"oauth-api": 0.0, ODD: 0.0, "broken": 1.0}


def test_the_plain_text_format_parses_and_matches_the_collector(busy_manager):
    snapshot = busy_manager.get_metrics()
    plain = _families(prometheus_text(snapshot))
    registry = CollectorRegistry()
    registry.register(OAuthGatewayCollector(busy_manager))
    collected = _families(generate_latest(registry).decode("utf-8"))
    assert sorted(plain) == sorted(collected)
    for name in plain:
        assert plain[name].type == collected[name].type, name
        assert _samples(plain[name]) == _samples(collected[name]), name
    refreshes = {s.labels["server"]: s.value for s in plain["oauth_gateway_token_refreshes"].samples}
    assert refreshes["oauth-api"] == 1.0


def test_a_custom_prefix_and_no_reads_when_registering(manager):
    class CountingManager:
        calls = 0

        def get_metrics(self):
            CountingManager.calls += 1
            return manager.get_metrics()

    registry = CollectorRegistry()
    registry.register(OAuthGatewayCollector(CountingManager(), prefix="mcp_"))
    assert CountingManager.calls == 0
    families = _families(generate_latest(registry).decode("utf-8"))
    assert CountingManager.calls == 1
    assert "mcp_token_cache_hits" in families
    assert all(not name.startswith("oauth_gateway_") for name in families)
