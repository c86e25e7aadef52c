"""Helpers that tests run in other processes (token workers, a gunicorn app) and a redis-server runner.

A package so that test modules can ``from workers.redis_server import RedisServer``
(pytest puts ``tests/`` on ``sys.path``); it holds no tests.
"""

from __future__ import annotations
