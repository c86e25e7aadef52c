"""The Django app: system check, management command, session helper and metrics views.

Django is configured once for this process here (``settings.configure``); each test
points ``OAUTH_GATEWAY`` at its own gateway file with ``override_settings``, and the app
makes a new client when that setting changes. The views run through ``django.test.Client``
and call real HTTPS test servers.
"""

from __future__ import annotations

import io
import json
import os
import sys
import types

import django
import pytest
import requests
from django.conf import settings
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.http import JsonResponse
from django.test import Client, override_settings
from django.urls import include, path
from prometheus_client.parser import text_string_to_metric_families

import oauth_gateway as og
from gatewayfile import CONFIG_ID, gateway_document, write_gateway_file
from oauth_gateway.contrib import django as og_django
from oauth_gateway.contrib.django.checks import check_gateway_config
from servers import TEST_CLIENT_ID, TEST_CLIENT_SECRET, basic_credentials

SERVER = "oauth-api"
_URLCONF = "oauth_gateway_test_django_urls"


def _data_view(request):
    with og_django.session(SERVER) as api:
        upstream = api.get(request.GET["url"], timeout=10)
    return JsonResponse({"status": upstream.status_code, "retried": len(upstream.history)})


def _configure_django() -> None:
    urls = types.ModuleType(_URLCONF)
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path("oauth-gateway/", include("oauth_gateway.contrib.django.urls")),
        path("data", _data_view),
    ]
    sys.modules[_URLCONF] = urls
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tests-only-not-a-secret",
            ALLOWED_HOSTS=["testserver"],
            INSTALLED_APPS=["oauth_gateway.contrib.django"],
            MIDDLEWARE=[],
            ROOT_URLCONF=_URLCONF,
            DATABASES={},
            USE_TZ=True,
            OAUTH_GATEWAY={"CONFIG_FILE": os.devnull},
        )
    django.setup()


_configure_django()


@pytest.fixture
def gateway_file(tmp_path, auth_server, make_block):
    return write_gateway_file(tmp_path / "enkrypt_mcp_config.json", {SERVER: make_block(auth_server)})


@pytest.fixture
def use_file(gateway_file):
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": gateway_file}):
        yield gateway_file


def _write(path, document, mode=0o600):
    with open(str(path), "w", encoding="utf-8") as handle:
        json.dump(document, handle)
    os.chmod(str(path), mode)
    return str(path)


def _ids(messages):
    return [m.id for m in messages]


# --------------------------------------------------------------------------- the system check


def test_a_good_file_passes_the_check(use_file):
    assert check_gateway_config() == []


def test_every_schema_problem_is_one_error_with_its_json_path_and_fix(tmp_path, auth_server, make_block):
    block = make_block(auth_server, OAUTH_SCOPES="read", OAUTH_TIMEOUT="10")
    block["OAUTH_TOKEN_URL"] = "http://idp.example/token"
    document = gateway_document({SERVER: block})
    path = _write(tmp_path / "bad.json", document)
    expected = og.validate_config(document)
    assert len(expected) >= 3
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": path}):
        messages = check_gateway_config()
    assert _ids(messages) == ["oauth_gateway.E003"] * len(expected)
    assert all(m.is_serious() for m in messages)
    assert [m.obj for m in messages] == ["%s::%s" % (path, p.json_path) for p in expected]
    assert [(m.msg, m.hint) for m in messages] == [(p.message, p.hint) for p in expected]
    base = "$.mcp_configs['%s'].mcp_config[0].oauth_config" % CONFIG_ID
    unknown = [m for m in messages if m.obj.endswith(base + ".OAUTH_SCOPES")]
    assert len(unknown) == 1 and "OAUTH_SCOPE" in unknown[0].hint
    # The secret of the block appears nowhere.
    assert all(TEST_CLIENT_SECRET not in str(m) for m in messages)


def test_the_check_is_registered_and_manage_py_check_fails(tmp_path):
    path = _write(tmp_path / "bad.json", {"mcp_configs": {"x": {"mcp_config": [{"server_name": ""}]}}})
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": path}):
        registered = checks.run_checks(tags=["oauth_gateway"])
        assert "oauth_gateway.E003" in _ids(registered)
        with pytest.raises(SystemCheckError, match=r"\(oauth_gateway\.E003\)"):
            call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "does not exist"),
        ('{"mcp_configs": {,}}', "is not valid JSON: Expecting property name enclosed in double quotes at line 1"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
    ],
    ids=["missing", "not-json", "not-utf8"],
)
def test_an_unreadable_file_is_one_error(tmp_path, content, problem):
    path = tmp_path / "enkrypt_mcp_config.json"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif content is not None:
        path.write_bytes(content)
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": str(path)}):
        messages = check_gateway_config()
    assert _ids(messages) == ["oauth_gateway.E002"]
    assert problem in messages[0].msg
    assert messages[0].obj == str(path)
    assert messages[0].hint


def test_without_config_file_the_environment_variable_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv("OAUTH_GATEWAY_CONFIG", str(tmp_path / "from-env.json"))
    with override_settings(OAUTH_GATEWAY={}):
        messages = check_gateway_config()
    assert messages[0].obj == str(tmp_path / "from-env.json")


def test_an_unset_environment_reference_is_an_error_unless_the_environment_is_not_checked(
    tmp_path, auth_server, make_block, monkeypatch
):
    monkeypatch.delenv("OAUTH_TEST_UNSET_SECRET", raising=False)
    block = make_block(auth_server, OAUTH_CLIENT_SECRET="${OAUTH_TEST_UNSET_SECRET}")
    path = write_gateway_file(tmp_path / "env.json", {SERVER: block})
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": path}):
        messages = check_gateway_config()
    assert _ids(messages) == ["oauth_gateway.E004"]
    assert "OAUTH_TEST_UNSET_SECRET" in messages[0].msg
    assert messages[0].obj.startswith(path + "::$.mcp_configs")
    assert messages[0].obj.endswith(".oauth_config.OAUTH_CLIENT_SECRET")
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": path, "CHECK_ENVIRONMENT": False}):
        assert check_gateway_config() == []
    monkeypatch.setenv("OAUTH_TEST_UNSET_SECRET", "set now")
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": path}):
        assert check_gateway_config() == []


def test_servers_named_in_settings_must_exist_and_be_enabled(tmp_path, auth_server, make_block):
    disabled = make_block(auth_server, enabled=False)
    path = write_gateway_file(tmp_path / "g.json", {SERVER: make_block(auth_server), "legacy": disabled})
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": path, "SERVERS": [SERVER, "oauth-apy", "legacy"]}):
        messages = check_gateway_config()
    assert _ids(messages) == ["oauth_gateway.E005", "oauth_gateway.E005"]
    missing, off = messages
    assert "'oauth-apy'" in missing.msg and "did you mean 'oauth-api'" in missing.hint
    assert "not enabled" in off.msg and off.obj.endswith(".oauth_config.enabled")


def test_malformed_settings_are_errors(tmp_path, use_file):
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": use_file, "SERVER": ["x"], "CHECK_ENVIRONMENT": "yes"}):
        messages = check_gateway_config()
        assert _ids(messages) == ["oauth_gateway.E001", "oauth_gateway.E001"]
        assert messages[0].obj == "settings.OAUTH_GATEWAY['SERVER']" and "SERVERS" in messages[0].hint
        with pytest.raises(django.core.exceptions.ImproperlyConfigured, match="unknown key"):
            og_django.get_manager()
    with override_settings(OAUTH_GATEWAY="/path/file.json"):
        messages = check_gateway_config()
        assert _ids(messages)[0] == "oauth_gateway.E001"
        assert "must be a dict" in messages[0].msg


def test_a_literal_secret_in_a_readable_file_is_a_warning(tmp_path, gateway_file):
    os.chmod(gateway_file, 0o644)
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": gateway_file}):
        messages = check_gateway_config()
    assert _ids(messages) == ["oauth_gateway.W001"]
    assert not messages[0].is_serious()
    assert messages[0].obj.endswith(".oauth_config.OAUTH_CLIENT_SECRET")


# --------------------------------------------------------------------------- the command


def test_the_token_command_prints_a_masked_token(use_file, auth_server):
    out = io.StringIO()
    call_command("oauth_gateway_token", SERVER, stdout=out)
    text = out.getvalue()
    token = auth_server.issued_history[0]
    assert token not in text
    assert text.startswith("server: oauth-api\nconfig_id: %s\n" % CONFIG_ID)
    assert "access_token: %s*** (%d characters, sha256:" % (token[:4], len(token)) in text
    assert "token_type: Bearer\nscopes: (none)\nexpires_in: 3" in text


def test_the_token_command_prints_the_fields_of_the_cli_under_the_same_names(use_file, auth_server, capsys):
    from oauth_gateway.cli import main

    out = io.StringIO()
    call_command("oauth_gateway_token", SERVER, stdout=out)
    assert main(["token", SERVER, "--config", use_file]) == 0
    cli_out = capsys.readouterr().out
    names = [line.split(":", 1)[0] for line in out.getvalue().splitlines()]
    assert names == [line.split(":", 1)[0] for line in cli_out.splitlines()]
    assert names == ["server", "config_id", "access_token", "token_type", "scopes", "expires_in", "expires_at"]


def test_the_token_command_shows_the_token_when_asked(use_file, auth_server):
    out = io.StringIO()
    call_command("oauth_gateway_token", SERVER, "--show", "--config-id", CONFIG_ID, stdout=out)
    assert out.getvalue() == auth_server.issued_history[-1] + "\n"  # alone, as `oauth-gateway token --show`


def test_the_token_command_fails_with_the_reason(use_file, tmp_path, auth_server, make_block):
    with pytest.raises(CommandError, match="did you mean 'oauth-api'"):
        call_command("oauth_gateway_token", "oauth-apy", stdout=io.StringIO())
    wrong = write_gateway_file(tmp_path / "wrong.json", {SERVER: make_block(auth_server, OAUTH_CLIENT_SECRET="nope")})
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": wrong}):
        with pytest.raises(CommandError, match="invalid_client"):
            call_command("oauth_gateway_token", SERVER, stdout=io.StringIO())


# --------------------------------------------------------------------------- sessions and views


def _revoke(server, token, ca_bundle):
    response = requests.post(
        server.revocation_url,
        data={"token": token},
        headers={"Authorization": basic_credentials(TEST_CLIENT_ID, TEST_CLIENT_SECRET)},
        verify=ca_bundle,
        timeout=10,
    )
    assert response.status_code == 200


def test_a_view_calls_the_api_and_recovers_from_a_revoked_token(use_file, auth_server, ca_bundle, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)  # the view's session trusts the test CA
    client = Client()
    url = {"url": auth_server.resource_url}
    assert client.get("/data", url).json() == {"status": 200, "retried": 0}
    assert client.get("/data", url).json() == {"status": 200, "retried": 0}
    _revoke(auth_server, auth_server.issued_history[0], ca_bundle)
    assert client.get("/data", url).json() == {"status": 200, "retried": 1}
    assert auth_server.count("/token") == 2
    assert og_django.get_manager() is og_django.get_manager()


def test_the_helpers_use_one_manager_and_the_file(use_file, auth_server):
    token = og_django.get_token(SERVER)
    assert og_django.get_token(SERVER, CONFIG_ID) is token
    auth = og_django.auth(SERVER, retry_on_any_401=True)
    assert (auth.manager, auth.config_id, auth.retry_on_any_401) == (og_django.get_manager(), CONFIG_ID, True)
    with og_django.session(SERVER) as made:
        assert made.auth == og_django.auth(SERVER)
    og_django.reload()
    assert og_django.get_token(SERVER) is token  # reloading the file keeps cached tokens
    assert auth_server.count("/token") == 1


def test_a_new_setting_gives_a_new_manager(use_file, tmp_path, auth_server, make_block):
    first = og_django.get_manager()
    other = write_gateway_file(tmp_path / "other.json", {SERVER: make_block(auth_server)})
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": other}):
        assert og_django.get_manager() is not first


def test_the_metrics_views(use_file, auth_server):
    og_django.get_token(SERVER)
    og_django.get_token(SERVER)
    client = Client()
    response = client.get("/oauth-gateway/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode("utf-8"))}
    hits = families["oauth_gateway_token_cache_hits"].samples
    assert [(s.labels, s.value) for s in hits] == [({"server": SERVER}, 1)]
    document = client.get("/oauth-gateway/metrics.json").json()
    assert document["servers"][SERVER]["token_acquisitions_success"] == 1
    assert client.post("/oauth-gateway/metrics").status_code == 405
    assert auth_server.issued_history[0] not in response.content.decode("utf-8")


def test_without_the_app_installed_the_helpers_say_what_to_add():
    with override_settings(INSTALLED_APPS=[]):
        with pytest.raises(django.core.exceptions.ImproperlyConfigured, match="INSTALLED_APPS"):
            og_django.get_manager()


def test_a_file_that_breaks_the_schema_still_has_its_server_names_checked(tmp_path, auth_server, make_block):
    path = write_gateway_file(tmp_path / "g.json", {SERVER: make_block(auth_server, OAUTH_SCOPES="read")})
    with override_settings(OAUTH_GATEWAY={"CONFIG_FILE": path, "SERVERS": [SERVER, "oauth-apy"]}):
        messages = check_gateway_config()
    assert sorted(_ids(messages)) == ["oauth_gateway.E003", "oauth_gateway.E005"]


# --------------------------------------------------------------------------- error pages


def test_django_error_pages_and_admin_mails_never_show_the_secret(use_file, auth_server):
    import logging

    from django.core import mail
    from django.test import RequestFactory
    from django.utils.log import AdminEmailHandler
    from django.views.debug import ExceptionReporter, technical_500_response

    from servers import Fault

    auth_server.set_faults([Fault(status=401, json={"error": "invalid_client", "error_description": "no"})])
    request = RequestFactory().get("/data")
    try:
        og_django.get_token(SERVER)
    except og.TokenRequestError:
        exc_info = sys.exc_info()
    else:  # pragma: no cover - the fault makes it fail
        raise AssertionError("the token request should have failed")
    # The secrets to look for are named only after the pages are made: this frame is on the traceback.
    pages = [
        ExceptionReporter(request, *exc_info).get_traceback_html(),
        ExceptionReporter(request, *exc_info).get_traceback_text(),
        technical_500_response(request, *exc_info).content.decode("utf-8"),
    ]
    with override_settings(
        ADMINS=[("ops", "ops@example.com")], EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"
    ):
        record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error", (), exc_info)
        record.request = request
        AdminEmailHandler(include_html=True).emit(record)
        assert len(mail.outbox) == 1
        pages.append(mail.outbox[0].body)
        pages.extend(content for content, _ in mail.outbox[0].alternatives)
    assert all("frame" in page or "Traceback" in page for page in pages)
    import html

    pages = [html.unescape(page) for page in pages]
    secrets = [TEST_CLIENT_SECRET, basic_credentials(TEST_CLIENT_ID, TEST_CLIENT_SECRET)[len("Basic ") :]]
    assert [i for i, page in enumerate(pages) for secret in secrets if secret in page] == []
