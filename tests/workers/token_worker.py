"""A process of a multi-process test: N threads of one TokenManager asking for one token.

Run as ``python token_worker.py JOB_FILE``; the job is a JSON file (the oauth block holds
the client secret, so it is kept out of the process list)::

    {"cache": {"kind": "file" | "redis" | "settings", ...options},
     "block": {...oauth_config...}, "server_name": "oauth-api", "threads": 8,
     "server_names": ["a", "b"],  # optional: thread i asks for server_names[i % len] instead
     "ready_dir": "/tmp/x/ready", "go_file": "/tmp/x/go",
     "duration": 0, "interval": 0.05}

``kind`` ``file`` passes the other keys to ``FileTokenCache``, ``redis`` to
``RedisTokenCache``, ``settings`` passes ``value`` and ``encryption_key`` to
``cache_from_settings``. The worker builds its manager, touches ``<ready_dir>/<pid>``,
waits for ``go_file`` to exist (a barrier across processes), then every thread calls
``get_token`` once (``duration`` 0) or repeatedly every ``interval`` seconds for
``duration`` seconds. It prints one JSON line: the fingerprints of the tokens it got
(never a token), the number of calls, the errors, the manager's metrics, and how many
of its own log records contained one of its tokens (must be 0); with ``server_names``,
also ``by_server``: the fingerprints each server name got.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import warnings
from typing import Any, Dict, List

warnings.filterwarnings("ignore", message=".*no longer supported.*")  # cryptography on 3.8

import oauth_gateway as og  # noqa: E402
from oauth_gateway.contrib.cache_settings import cache_from_settings  # noqa: E402

#: Longest wait for the go file (seconds); a test that never says go must not leave workers behind.
_GO_BUDGET = 60.0


class _Records(logging.Handler):
    """Keeps every formatted record, to check that no token reached a log line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: List[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _make_cache(spec: Dict[str, Any]):
    options = dict(spec)
    kind = options.pop("kind")
    if kind == "file":
        from oauth_gateway.contrib.file_cache import FileTokenCache

        return FileTokenCache(**options)
    if kind == "redis":
        from oauth_gateway.contrib.redis_cache import RedisTokenCache

        return RedisTokenCache(**options)
    if kind == "settings":
        return cache_from_settings(options.get("value"), encryption_key=options.get("encryption_key"))
    raise SystemExit("token_worker: unknown cache kind %r" % kind)


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        job = json.load(handle)
    records = _Records()
    logging.getLogger().addHandler(records)
    logging.getLogger("oauth_gateway").setLevel(logging.DEBUG)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING)
    logging.getLogger().addHandler(stderr)

    manager = og.TokenManager(cache=_make_cache(job["cache"]))
    config = og.OAuthConfig.from_dict(job["block"])
    server_names = job.get("server_names") or [job.get("server_name", "oauth-api")]
    count = int(job.get("threads", 8))
    duration = float(job.get("duration", 0))
    interval = float(job.get("interval", 0.05))

    seen: Dict[str, str] = {}  # fingerprint -> token, in order of first sight
    by_server: Dict[str, List[str]] = {name: [] for name in server_names}
    calls = [0]
    errors: List[str] = []
    guard = threading.Lock()
    barrier = threading.Barrier(count)

    def run(server_name: str) -> None:
        barrier.wait()
        deadline = time.monotonic() + duration
        while True:
            try:
                token = manager.get_token(server_name, config)
            except Exception as exc:  # reported to the test, which asserts there are none
                with guard:
                    errors.append("%s: %s" % (type(exc).__name__, exc))
            else:
                with guard:
                    calls[0] += 1
                    seen.setdefault(token.fingerprint, token.access_token)
                    if token.fingerprint not in by_server[server_name]:
                        by_server[server_name].append(token.fingerprint)
            if time.monotonic() >= deadline:
                return
            time.sleep(interval)

    with open(os.path.join(job["ready_dir"], str(os.getpid())), "w"):
        pass
    give_up = time.monotonic() + _GO_BUDGET
    while not os.path.exists(job["go_file"]):
        if time.monotonic() > give_up:
            raise SystemExit("token_worker: no go file after %ds" % _GO_BUDGET)
        time.sleep(0.005)

    threads = [threading.Thread(target=run, args=(server_names[i % len(server_names)],)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    tokens = list(seen.values())
    leaks = sum(1 for line in records.lines if any(token in line for token in tokens))
    metrics = manager.get_metrics()
    metrics.pop("servers", None)
    print(
        json.dumps(
            {
                "pid": os.getpid(),
                "fingerprints": list(seen),
                "by_server": by_server,
                "calls": calls[0],
                "errors": errors,
                "metrics": metrics,
                "log_lines": len(records.lines),
                "leaks": leaks,
            }
        )
    )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
