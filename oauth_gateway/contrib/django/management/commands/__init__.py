"""Management commands of the oauth_gateway Django app."""

from __future__ import annotations

__all__: tuple[str, ...] = ()
