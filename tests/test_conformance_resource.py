"""The RFC 8707 ``resource`` goes out exactly as the protected resource metadata publishes it.

The conformance suite (``resource-parameter-matches-prm``) compares the token request's
``resource`` with the metadata's string; RFC 9728 section 3.3 lets a document at the
origin's root well-known URL name the origin.
"""

from __future__ import annotations

import pytest
import requests

from metadata_servers import CountingFetch, MetadataServer, requests_fetch
from oauth_gateway.discovery import Discoverer
from oauth_gateway.exceptions import DiscoveryError

PRM = "/.well-known/oauth-protected-resource"


@pytest.fixture
def meta(ca):
    with MetadataServer(ca) as server:
        yield server


@pytest.fixture
def discoverer(ca_bundle, clock):
    with requests.Session() as session:
        session.verify = ca_bundle
        yield Discoverer(CountingFetch(requests_fetch(session)), clock=clock)


def test_root_metadata_naming_the_origin_is_accepted_and_its_resource_is_sent_as_published(meta, discoverer):
    urls = meta.publish(in_challenge=False, prm_at=PRM, resource=meta.url)
    result = discoverer.protected_resource(urls["mcp"])
    assert result.resource_metadata_url == meta.url + PRM
    assert result.resource == meta.url  # the origin, not the server's URL


def test_path_metadata_naming_the_origin_is_still_refused(meta, discoverer):
    urls = meta.publish(resource=meta.url)  # at /.well-known/oauth-protected-resource/mcp
    with pytest.raises(DiscoveryError) as info:
        discoverer.protected_resource(urls["mcp"])
    assert "'resource' is %r" % meta.url in str(info.value)


def test_the_published_spelling_is_kept_when_it_matches_canonically(meta, discoverer):
    published = meta.url.replace("https://", "HTTPS://") + "/mcp/"
    urls = meta.publish(resource=published)
    assert discoverer.protected_resource(urls["mcp"]).resource == published
