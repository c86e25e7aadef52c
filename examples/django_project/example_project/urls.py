"""URLs of the example project."""

from __future__ import annotations

from django.urls import include, path

from . import views

urlpatterns = [
    path("data", views.data),
    path("oauth-gateway/", include("oauth_gateway.contrib.django.urls")),
]
