"""An example Django project that calls an OAuth-protected API through oauth_gateway."""

from __future__ import annotations
