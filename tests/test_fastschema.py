"""The quick schema check never calls a document valid that jsonschema rejects."""

from __future__ import annotations

import copy
import glob
import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from oauth_gateway import schema
from oauth_gateway._fastschema import is_valid

FILES = {"%s.schema.json" % name: schema.load_schema(name) for name in schema.SCHEMA_NAMES}
KEYS = sorted(schema.load_schema("oauth-config")["properties"]) + ["OAUTH_SCOPES", "$schema", "extra"]
VALUES = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        1,
        -1,
        0.5,
        1.0,
        3.0,
        2**40,
        "",
        " ",
        "x",
        "2.0",
        "2.1",
        "true",
        "https://a.example/t",
        "http://a/t",
        "${X}",
        "https://${H}/t",
        "read  write",
        " read",
        "read write",
        "client_credentials",
        "a\u00e9",
        [],
        [""],
        ["https://a/r"],
        ["x", "y"],
        {},
        {"a": "b"},
        {"grant_type": "x"},
        {"Authorization": "x"},
        {"X-A": 1},
        {"content-type": "x"},
    ]
)
BASE = {
    "enabled": True,
    "OAUTH_VERSION": "2.1",
    "OAUTH_CLIENT_ID": "c",
    "OAUTH_CLIENT_SECRET": "s",
    "OAUTH_TOKEN_URL": "https://a.example/t",
    "OAUTH_SCOPE": "read write",
    "OAUTH_RESOURCE": ["https://a/r"],
}
FIXTURES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "fixtures", "*.json")))


def _truth(document, name):
    return not any(True for _ in schema._validator(name).iter_errors(document))


def _agrees(document, name):
    fast = is_valid(document, schema.load_schema(name), FILES)
    assert not fast or _truth(document, name), json.dumps(document, default=str)[:300]
    return fast


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6), st.lists(st.sampled_from(sorted(BASE)), max_size=3))
def test_mutated_blocks(changes, removed):
    block = dict(BASE)
    for key in removed:
        block.pop(key, None)
    block.update(copy.deepcopy(changes))
    _agrees(block, "oauth-config")
    gateway = {
        "mcp_configs": {"abc": {"mcp_config_name": "x", "mcp_config": [{"server_name": "s", "oauth_config": block}]}}
    }
    _agrees(gateway, "gateway-config")


def test_fixture_files_and_the_valid_base():
    assert _agrees(BASE, "oauth-config") is True  # the fast path is taken for a plain valid block
    for path in FIXTURES:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        name = (
            "gateway-config"
            if isinstance(document, dict) and any(k in document for k in schema._GATEWAY_KEYS)
            else "oauth-config"
        )
        fast = _agrees(document, name)
        if os.path.basename(path).startswith(("gateway-bad", "oauth-bad")):
            assert not fast, path
