"""Optional integrations, each behind its own extra.

* :mod:`oauth_gateway.contrib.flask` (``pip install oauth-gateway[flask]``): the
  ``OAuthGateway`` Flask extension.
* :mod:`oauth_gateway.contrib.django` (``oauth-gateway[django]``): a Django app with a
  system check, the ``oauth_gateway_token`` management command and metrics views.
* :mod:`oauth_gateway.contrib.prometheus` (``oauth-gateway[prometheus]``): a
  ``prometheus_client`` collector.
* :mod:`oauth_gateway.contrib.redis_cache` (``oauth-gateway[redis]``) and
  :mod:`oauth_gateway.contrib.file_cache`: token caches shared by processes.

Importing this package imports none of them.
"""

from __future__ import annotations

__all__: tuple[str, ...] = ()
