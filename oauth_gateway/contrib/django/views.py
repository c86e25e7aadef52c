"""Metrics views: the process's token counters in the Prometheus text format and as JSON.

Neither shows a token or a secret; protect them as you would other operational endpoints
(wrap them in ``staff_member_required`` or serve them on an internal host).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from .._common import PROMETHEUS_CONTENT_TYPE
from . import gateway_client

__all__ = ("metrics", "metrics_json")


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """``GET``: the metrics in the Prometheus text exposition format."""
    return HttpResponse(gateway_client().metrics_text(), content_type=PROMETHEUS_CONTENT_TYPE)


@require_GET
def metrics_json(request: HttpRequest) -> JsonResponse:
    """``GET``: :meth:`TokenManager.get_metrics` as JSON."""
    return JsonResponse(gateway_client().metrics())
