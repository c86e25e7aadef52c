"""URLs of the metrics views: ``path("oauth-gateway/", include("oauth_gateway.contrib.django.urls"))``."""

from __future__ import annotations

from django.urls import path

from . import views

__all__: tuple[str, ...] = ()

app_name = "oauth_gateway"

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
    path("metrics.json", views.metrics_json, name="metrics-json"),
]
