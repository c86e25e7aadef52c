"""The example view: call the API with the server's token, recovering from a revoked one."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse

from oauth_gateway.contrib.django import session


def data(request):
    with session(settings.OAUTH_SERVER_NAME) as api:
        upstream = api.get(settings.UPSTREAM_URL, timeout=10)
    if not upstream.ok:
        return JsonResponse({"error": "upstream answered %d" % upstream.status_code}, status=502)
    return JsonResponse({"upstream": upstream.json()})
