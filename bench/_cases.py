"""The measurements: each function runs one part of the benchmark and returns its table.

All traffic goes to :class:`~_loopback.BenchServer` on 127.0.0.1. Every loop has a fixed
count, every thread run a timeout, every subprocess a timeout.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import cachetools
import requests
from _loopback import CLIENT_ID, CLIENT_SECRET, start_server
from _peers import Peer, describe_failure
from _timing import Table, ms, ns, per_call_ns, ratio, run_threads, throughput_ratio
from requests.auth import AuthBase

import oauth_gateway as og
from oauth_gateway.client_auth import basic_credentials

#: Seconds a subprocess of the script benchmark may take.
SUBPROCESS_TIMEOUT = 60.0


class Target:
    """One goal of issue 7, as a ratio measured in this run."""

    def __init__(self, name: str, value: Optional[float], limit: float, at_least: bool = False, unit: str = "x"):
        self.name = name
        self.value = value
        self.limit = limit
        self.at_least = at_least
        self.unit = unit

    @property
    def met(self) -> Optional[bool]:
        if self.value is None:
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def _format(self, value: float) -> str:
        return "%.2fx" % value if self.unit == "x" else "%g%s" % (value, self.unit)

    def limit_text(self) -> str:
        return "%s %s" % (">=" if self.at_least else "<=", self._format(self.limit))

    def value_text(self) -> str:
        return "n/a" if self.value is None else self._format(self.value)

    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "n/a"}[self.met]


class Context:
    """What every measurement shares: the CA, the peers, the scale and the targets found."""

    def __init__(self, ca: Any, peers: List[Peer], quick: bool, latency: float):
        self.ca = ca
        self.peers = peers
        self.quick = quick
        self.latency = latency
        self.targets: List[Target] = []
        self.floor_ns: Optional[float] = None

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def target(self, *args: Any, **kwargs: Any) -> Target:
        target = Target(*args, **kwargs)
        self.targets.append(target)
        return target


def oauth_block(server: Any, ca_bundle: str, **overrides: Any) -> Dict[str, Any]:
    block = {
        "enabled": True,
        "OAUTH_VERSION": "2.1",
        "OAUTH_CLIENT_ID": CLIENT_ID,
        "OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        "OAUTH_TOKEN_URL": server.token_url,
        "OAUTH_CA_BUNDLE_PATH": ca_bundle,
    }
    block.update(overrides)
    return block


_monotonic = time.monotonic


class FloorAuth(AuthBase):
    """The fair floor of an auth hook: what any token-attaching AuthBase must do, and no more.

    It reads a token from a dict with an expiry check, sets the header and appends its
    response hook directly (``register_hook`` would add an ``isinstance(hook, Callable)``
    ABC check that costs as much as the rest, and would flatter the ratio).
    """

    def __init__(self, tokens: Dict[Any, Tuple[str, float]], key: Any) -> None:
        self.tokens = tokens
        self.key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        entry = self.tokens.get(self.key)
        if entry is None or _monotonic() >= entry[1]:
            raise RuntimeError("the floor's token expired")
        request.headers["Authorization"] = entry[0]
        request.hooks["response"].append(self.on_response)
        return request

    def on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        return response


def _verdict(target: Target) -> str:
    return "target %s: %s" % (target.limit_text(), target.verdict())


def _with_peers(ctx: Context, server: Any, ca_bundle: str, use: Callable[[Peer, Any], None]) -> Dict[str, str]:
    """Build each available peer against ``server`` and call ``use(peer, client)``; return the n/a reasons."""
    failures: Dict[str, str] = {}
    for peer in ctx.peers:
        if not peer.available:
            failures[peer.name] = str(peer.reason)
            continue
        client = None
        try:
            client = peer.build(server, ca_bundle)
            use(peer, client)
        except Exception as exc:
            failures[peer.name] = describe_failure(exc)
        finally:
            if client is not None:
                try:
                    peer.close(client)
                except Exception:
                    pass
    return failures


# --------------------------------------------------------------------------- 1 and 2: cache hits


def cache_hits(ctx: Context) -> List[Table]:
    """Nanoseconds per cache hit: the floor, our calls, the peers' (one thread)."""
    server, ca_bundle = start_server(ctx.ca)
    try:
        return _cache_hits(ctx, server, ca_bundle)
    finally:
        server.stop()


def _hit_namespaces(ctx: Context, server: Any, ca_bundle: str):
    """Build the rows of the cache-hit tables: ``{name: (stmt, namespace factory, calls per round)}``."""
    manager = og.TokenManager()
    config = og.OAuthConfig.from_dict(oauth_block(server, ca_bundle))
    token = manager.get_token("bench", config)
    auth = manager.auth("bench", config)
    service = og.OAuthService(manager)
    block = oauth_block(server, ca_bundle)
    monotonic = time.monotonic
    table = {("bench", "default"): (token, monotonic() + 3600)}
    lock = threading.Lock()
    ttl = cachetools.TTLCache(1024, 3600)
    ttl[("bench", "default")] = token

    def floor(server_name, config_id="default"):
        entry = table.get((server_name, config_id))
        if entry is not None and monotonic() < entry[1]:
            return entry[0]
        return None

    def floor_locked(server_name, config_id="default"):
        with lock:
            entry = table.get((server_name, config_id))
            if entry is not None and monotonic() < entry[1]:
                return entry[0]
            return None

    def ttl_get(server_name, config_id="default"):
        return ttl[(server_name, config_id)]

    base = requests.Request("GET", server.resource_url).prepare()
    floor_auth = FloorAuth({("bench", "default"): (token.authorization, monotonic() + 3600)}, ("bench", "default"))

    def request_ns(**extra):
        def make():
            request = base.copy()
            namespace = {"req": request, "hooks": request.hooks["response"]}
            namespace.update(extra)
            return namespace

        return make

    fast = ctx.scale(200000, 40000)
    slow = ctx.scale(20000, 4000)
    rows = {
        "floor": ("floor(name)", lambda: {"floor": floor, "name": "bench"}, fast),
        "locked": ("floor(name)", lambda: {"floor": floor_locked, "name": "bench"}, fast),
        "ttl": ("ttl_get(name)", lambda: {"ttl_get": ttl_get, "name": "bench"}, fast),
        "get_token": (
            "get_token(name, config)",
            lambda: {"get_token": manager.get_token, "name": "bench", "config": config},
            fast,
        ),
        "compat": (
            "get_access_token(name, block)",
            lambda: {"get_access_token": service.get_access_token, "name": "bench", "block": block},
            ctx.scale(500, 100),
        ),
        "floor_auth": ("auth(req); hooks.clear()", request_ns(auth=floor_auth), slow),
        "token_auth": ("auth(req); hooks.clear()", request_ns(auth=auth), slow),
    }
    clients: List[Tuple[Peer, Any]] = []

    def add_peer(peer: Peer, client: Any) -> None:
        peer.caller(client, base)()  # first token: from then on, hits
        stmt, _namespace = peer.hit_stmt(client, base.copy())
        # A new prepared request for every namespace: threads never share one.
        rows[peer.name] = (stmt, lambda: peer.hit_stmt(client, base.copy())[1], slow)
        clients.append((peer, client))

    failures: Dict[str, str] = {}
    for peer in ctx.peers:
        if not peer.available:
            failures[peer.name] = str(peer.reason)
            continue
        try:
            add_peer(peer, peer.build(server, ca_bundle))
        except Exception as exc:
            failures[peer.name] = describe_failure(exc)
    return rows, failures, clients


def _cache_hits(ctx: Context, server: Any, ca_bundle: str) -> List[Table]:
    rows, failures, clients = _hit_namespaces(ctx, server, ca_bundle)
    rounds = ctx.scale(7, 3)
    # Rows are interleaved round by round; each row keeps its best round.
    spec = [(name, stmt, make(), number) for name, (stmt, make, number) in rows.items()]
    try:
        measured, errors = per_call_ns(spec, rounds)
    finally:
        for peer, client in clients:
            peer.close(client)
    for name, exc in errors.items():
        if name in ("floor", "locked", "ttl", "get_token", "compat", "floor_auth", "token_auth"):
            raise exc  # ours must work
        failures[name] = describe_failure(exc)
    floor = measured["floor"]
    ctx.floor_ns = floor
    ours = measured["get_token"]
    hook = measured["token_auth"]
    floor_auth = measured["floor_auth"]

    one = Table(
        "1. Cache hit, one thread: get a token (ns per call, best of %d rounds)" % rounds,
        ["path", "ns/call", "x floor", "x get_token", "notes"],
    )
    one.add("floor: dict.get + time.monotonic() compare", ns(floor), ratio(1.0), ratio(floor / ours))
    one.add(
        "the floor inside a threading.Lock",
        ns(measured["locked"]),
        ratio(measured["locked"] / floor),
        ratio(measured["locked"] / ours),
    )
    one.add(
        "cachetools.TTLCache[key]", ns(measured["ttl"]), ratio(measured["ttl"] / floor), ratio(measured["ttl"] / ours)
    )
    target = ctx.target("cache-hit get_token, x the dict floor", ours / floor, 1.5)
    one.add(
        "oauth-gateway TokenManager.get_token(OAuthConfig)", ns(ours), ratio(ours / floor), ratio(1.0), _verdict(target)
    )
    one.add(
        "oauth-gateway compat get_access_token(dict)",
        ns(measured["compat"]),
        ratio(measured["compat"] / floor),
        ratio(measured["compat"] / ours),
        "validates the dict on every call",
    )
    msal = [p for p in ctx.peers if p.name.startswith("MSAL")]
    for peer in msal:
        if peer.name in measured:
            value = measured[peer.name]
            one.add(peer.name, ns(value), ratio(value / floor), ratio(value / ours))
        else:
            one.add(peer.name, "n/a", "", "", failures.get(peer.name, ""))
    one.note("Every row is a call with the same shape, get(server_name[, config]), timed in one compiled loop.")
    one.note("x get_token: how many times the time of TokenManager.get_token; above 1.00x is slower than ours.")

    two = Table(
        "2. Cache hit, one thread: requests auth hook on a prepared request (ns per call, best of %d rounds)" % rounds,
        ["path", "ns/call", "x floor", "x floor auth", "x TokenAuth", "notes"],
    )
    two.add(
        "floor AuthBase: dict token + expiry check, header, hook appended",
        ns(floor_auth),
        ratio(floor_auth / floor),
        ratio(1.0),
        ratio(floor_auth / hook),
    )
    target = ctx.target("auth hook, x the floor AuthBase", hook / floor_auth, 1.3)
    two.add(
        "oauth-gateway TokenAuth (manager.auth)",
        ns(hook),
        ratio(hook / floor),
        ratio(hook / floor_auth),
        ratio(1.0),
        _verdict(target),
    )
    for peer in ctx.peers:
        if peer in msal:
            continue
        if peer.name in measured:
            value = measured[peer.name]
            two.add(peer.name, ns(value), ratio(value / floor), ratio(value / floor_auth), ratio(value / hook))
        else:
            two.add(peer.name, "n/a", "", "", "", failures.get(peer.name, ""))
    two.note("Each call is followed by hooks.clear() (in every row) so the request's hook list does not grow.")
    return [one, two]


# --------------------------------------------------------------------------- 3: threads


def threads(ctx: Context, count: int = 8) -> Table:
    """Cache-hit calls per second with ``count`` threads against one thread."""
    server, ca_bundle = start_server(ctx.ca)
    try:
        rows, failures, clients = _hit_namespaces(ctx, server, ca_bundle)
        rounds = ctx.scale(3, 1)
        singles, errors = per_call_ns(
            [(name, stmt, make(), number // 4) for name, (stmt, make, number) in rows.items()], 1
        )
        for name, exc in errors.items():
            failures[name] = describe_failure(exc)
        table = Table(
            "3. Cache-hit throughput: %d threads against 1 (calls per second, best of %d)" % (count, rounds),
            ["path", "1 thread", "%d threads" % count, "ratio", "notes"],
        )
        labels = {
            "floor": "floor: dict.get + time.monotonic() compare",
            "locked": "the floor inside a threading.Lock",
            "ttl": "cachetools.TTLCache[key]",
            "get_token": "oauth-gateway TokenManager.get_token",
            "compat": None,
            "floor_auth": "floor AuthBase (dict token, header, hook appended)",
            "token_auth": "oauth-gateway TokenAuth",
        }
        for name, (stmt, make, _number) in rows.items():
            label = labels.get(name, name)
            if label is None or name not in singles:
                continue
            try:
                one, many, value = throughput_ratio(stmt, make, singles[name], count, rounds, ctx.scale(0.25, 0.15))
            except Exception as exc:
                table.add(label, "n/a", "", "", describe_failure(exc))
                continue
            notes = ""
            if name == "get_token":
                notes = _verdict(ctx.target("cache-hit throughput, %d threads / 1" % count, value, 0.8, at_least=True))
            table.add(label, "{:,.0f}".format(one), "{:,.0f}".format(many), ratio(value), notes)
        for name, reason in failures.items():
            table.add(name, "n/a", "", "", reason)
        for peer, client in clients:
            peer.close(client)
        table.note("Both runs make the same total number of calls; each thread has its own prepared request.")
        return table
    finally:
        server.stop()


# --------------------------------------------------------------------------- 4 and 5: cold caches


def cold_cache(ctx: Context, count: int = 64) -> Table:
    """``count`` threads ask for a token at once, nothing cached, against a slow endpoint."""
    latency = ctx.latency
    server, ca_bundle = start_server(ctx.ca, latency=latency)
    table = Table(
        "4. Cold cache: %d threads at once, endpoint latency %.0f ms" % (count, latency * 1e3),
        ["client", "token requests", "wall ms", "x latency", "errors", "notes"],
    )
    try:
        manager = og.TokenManager()
        config = og.OAuthConfig.from_dict(oauth_block(server, ca_bundle))
        before = server.count()
        run = run_threads(count, lambda _i: lambda: manager.get_token("bench", config))
        made = server.count() - before
        distinct = len({token.access_token for token in run.results if token is not None})
        wall = run.wall if run.finished else None
        value = None if wall is None else wall / latency
        one = ctx.target("%d cold threads: token requests" % count, float(made), 1.0, unit="")
        two = ctx.target("%d cold threads: wall time, x endpoint latency" % count, value, 1.5)
        table.add(
            "oauth-gateway TokenManager.get_token",
            made,
            ms(wall),
            ratio(value),
            len(run.errors),
            "%d distinct token(s); requests %s, wall %s" % (distinct, one.verdict(), two.verdict()),
        )
        manager.close()

        def use(peer: Peer, client: Any) -> None:
            base = requests.Request("GET", server.resource_url).prepare()
            before = server.count()
            run = run_threads(count, lambda _i: peer.caller(client, base))
            made = server.count() - before
            wall = run.wall if run.finished else None
            notes = describe_failure(run.errors[0]) if run.errors else ""
            table.add(
                peer.name, made, ms(wall), ratio(None if wall is None else wall / latency), len(run.errors), notes
            )

        for name, reason in _with_peers(ctx, server, ca_bundle, use).items():
            table.add(name, "n/a", "", "", "", reason)
        table.note("Each client is new (no token, no connection); threads are released together by a barrier.")
        table.note("Authlib starts from an expired token (it has no fetch-on-first-use without one).")
        return table
    finally:
        server.stop()


def many_keys(ctx: Context, keys: int = 16, count: int = 64) -> Table:
    """``count`` threads over ``keys`` cache keys, nothing cached, against a slow endpoint."""
    latency = ctx.latency
    server, ca_bundle = start_server(ctx.ca, latency=latency)
    table = Table(
        "5. Cold cache: %d keys x %d threads, endpoint latency %.0f ms" % (keys, count, latency * 1e3),
        ["client", "token requests", "wall ms", "x one fetch", "errors", "notes"],
    )
    try:
        config = og.OAuthConfig.from_dict(oauth_block(server, ca_bundle))
        names = ["bench-%02d" % i for i in range(keys)]
        with og.TokenManager() as single:
            start = time.perf_counter()
            single.get_token("one-fetch", config)
            one_fetch = time.perf_counter() - start
        manager = og.TokenManager()
        before = server.count()
        run = run_threads(count, lambda i: lambda: manager.get_token(names[i % keys], config))
        made = server.count() - before
        wall = run.wall if run.finished else None
        value = None if wall is None else wall / one_fetch
        one = ctx.target("%d keys x %d threads: token requests" % (keys, count), float(made), float(keys), unit="")
        two = ctx.target("%d keys x %d threads: wall time, x one fetch" % (keys, count), value, 3.0)
        table.add("one fetch (new manager, new connection)", 1, ms(one_fetch), ratio(1.0), 0, "")
        table.add(
            "oauth-gateway TokenManager.get_token",
            made,
            ms(wall),
            ratio(value),
            len(run.errors),
            "requests %s, wall %s" % (one.verdict(), two.verdict()),
        )
        manager.close()

        for peer in ctx.peers:
            if not peer.available:
                table.add(peer.name, "n/a", "", "", "", peer.reason)
                continue
            clients: List[Any] = []
            try:
                clients = [peer.build(server, ca_bundle) for _ in range(keys)]
                base = requests.Request("GET", server.resource_url).prepare()
                before = server.count()
                run = run_threads(
                    count, lambda i, peer=peer, clients=clients, base=base: peer.caller(clients[i % keys], base)
                )
                made = server.count() - before
                wall = run.wall if run.finished else None
                notes = describe_failure(run.errors[0]) if run.errors else ""
                table.add(
                    peer.name, made, ms(wall), ratio(None if wall is None else wall / one_fetch), len(run.errors), notes
                )
            except Exception as exc:
                table.add(peer.name, "n/a", "", "", "", describe_failure(exc))
            finally:
                for client in clients:
                    try:
                        peer.close(client)
                    except Exception:
                        pass
        table.note("A key is (server_name, config_id) for oauth-gateway, one client object for a peer.")
        return table
    finally:
        server.stop()


# --------------------------------------------------------------------------- 6: forced refreshes


def forced_refreshes(ctx: Context, count: int = 200) -> Table:
    """``count`` sequential forced refreshes: our client against plain requests loops."""
    count = ctx.scale(count, 50)
    rounds = ctx.scale(3, 1)
    server, ca_bundle = start_server(ctx.ca)
    table = Table(
        "6. %d sequential forced refreshes over HTTPS (loopback, best of %d)" % (count, rounds),
        ["client", "total ms", "us/request", "x session loop", "token requests", "notes"],
    )
    try:
        config = og.OAuthConfig.from_dict(oauth_block(server, ca_bundle))
        manager = og.TokenManager()
        manager.get_token("bench", config)  # the connection is open, as in a long-running process
        headers = {
            "Accept": "application/json",
            "Authorization": basic_credentials(CLIENT_ID, CLIENT_SECRET),
        }
        form = [("grant_type", "client_credentials")]
        timeout = (config.connect_timeout, config.timeout)
        session = requests.Session()
        session.verify = ca_bundle

        def plain_post(http: Any) -> str:
            response = http.post(server.token_url, data=form, headers=headers, timeout=timeout, allow_redirects=False)
            response.raise_for_status()
            return response.json()["access_token"]

        plain_post(session)

        def ours_loop() -> None:
            for _ in range(count):
                manager.refresh("bench", config)

        def session_loop() -> None:
            for _ in range(count):
                plain_post(session)

        def new_connection_loop() -> None:
            for _ in range(count):
                with requests.Session() as fresh:
                    fresh.verify = ca_bundle
                    plain_post(fresh)

        best: Dict[str, float] = {}
        made: Dict[str, int] = {}
        plan = [("ours", ours_loop), ("session", session_loop)] * rounds + [("new", new_connection_loop)]
        for name, loop in plan:
            before = server.count()
            start = time.perf_counter()
            loop()
            elapsed = time.perf_counter() - start
            made[name] = server.count() - before
            best[name] = min(best.get(name, float("inf")), elapsed)
        manager.close()
        session.close()
        target = ctx.target("forced refreshes, x a plain requests.Session loop", best["ours"] / best["session"], 1.1)
        rows = [
            ("oauth-gateway TokenManager.refresh", "ours", _verdict(target)),
            ("requests.Session POST loop (same form, Basic)", "session", ""),
            ("new connection per request (requests.Session each)", "new", ""),
        ]
        for label, name, notes in rows:
            table.add(
                label,
                ms(best[name]),
                "{:,.0f}".format(best[name] / count * 1e6),
                ratio(best[name] / best["session"]),
                made[name],
                notes,
            )
        table.note("The loops parse the JSON answer; ours also checks it, builds the Token and stores it in the cache.")
        return table
    finally:
        server.stop()


# --------------------------------------------------------------------------- 7: a script's whole run


def _child_env() -> Dict[str, str]:
    """The environment of the timed scripts: ours, able to import this oauth_gateway, bytecode cached."""
    env = dict(os.environ)
    # A source checkout run with PYTHONDONTWRITEBYTECODE would recompile oauth_gateway in every
    # run while requests (installed by pip) is precompiled: not a fair race.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(og.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in [env.get("PYTHONPATH", "")] if p])
    for name in ("OAUTH_GATEWAY_TOKEN_CACHE", "OAUTH_GATEWAY_TOKEN_CACHE_ENCRYPTION_KEY", "OAUTH_GATEWAY_CONFIG"):
        env.pop(name, None)
    return env


def _run(argv: List[str], env: Dict[str, str], cwd: str) -> Tuple[float, float, str]:
    """Run ``argv`` to its end; return its wall time, its CPU time and its output.

    ``cwd`` matters: ``python -c`` puts the working directory first on ``sys.path``, so
    run from a checkout it would import the checkout's oauth_gateway, not the one measured.
    """
    before = _children_cpu()
    start = time.perf_counter()
    completed = subprocess.run(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=SUBPROCESS_TIMEOUT
    )
    elapsed = time.perf_counter() - start
    cpu = _children_cpu() - before
    if completed.returncode != 0:
        tail = completed.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        raise RuntimeError("%s exited with %d: %s" % (argv[-1][:40], completed.returncode, tail[0][:200]))
    return elapsed, cpu, completed.stdout.decode("utf-8", "replace")


def _children_cpu() -> float:
    """User + system CPU seconds of the waited-for children so far (0 where unsupported)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def script_run(ctx: Context) -> Table:
    """A whole ``python -c`` run that loads a gateway file and gets a token from a warm file cache."""
    runs = ctx.scale(15, 5)
    server, ca_bundle = start_server(ctx.ca)
    workdir = tempfile.mkdtemp(prefix="oauth-gateway-bench-")
    table = Table(
        "7. A script's whole run, warm file cache (median of %d runs, interleaved)" % runs,
        ["command", "median ms", "min ms", "x import requests", "CPU ms", "CPU x", "notes"],
    )
    try:
        document = {
            "mcp_configs": {
                "cfg-1": {
                    "mcp_config_name": "default_config",
                    "mcp_config": [
                        {
                            "server_name": "bench",
                            "config": {"command": "npx", "args": ["-y", "mcp-remote", "https://127.0.0.1/mcp"]},
                            "oauth_config": oauth_block(server, ca_bundle),
                        }
                    ],
                }
            }
        }
        gateway_path = os.path.join(workdir, "enkrypt_mcp_config.json")
        with open(gateway_path, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
        os.chmod(gateway_path, 0o600)
        cache_dir = os.path.join(workdir, "tokens")
        script = (
            "import oauth_gateway as og\n"
            "from oauth_gateway.contrib.cache_settings import cache_from_settings\n"
            "config = og.load_gateway_config(%r).oauth_config('bench')\n"
            "manager = og.TokenManager(cache=cache_from_settings('file:%s'))\n"
            "assert manager.get_token('bench', config, 'cfg-1').access_token\n"
        ) % (gateway_path, cache_dir)
        commands = [
            ("baseline", 'python -c "import requests"', [sys.executable, "-c", "import requests"]),
            ("import", 'python -c "import oauth_gateway"', [sys.executable, "-c", "import oauth_gateway"]),
            ("script", "python -c: load gateway file, file cache, get_token", [sys.executable, "-c", script]),
        ]
        env = _child_env()
        for _name, _label, argv in commands:
            _run(argv, env, workdir)  # warm: bytecode caches, and the script's first token goes to the file cache
        probe = "import oauth_gateway, os; print(os.path.realpath(oauth_gateway.__file__))"
        child_file = _run([sys.executable, "-c", probe], env, workdir)[2].strip()
        if child_file != os.path.realpath(og.__file__):
            table.note("WARNING: the scripts import %s, not the measured %s" % (child_file, og.__file__))
        before = server.count()
        walls: Dict[str, List[float]] = {name: [] for name, _label, _argv in commands}
        cpus: Dict[str, List[float]] = {name: [] for name, _label, _argv in commands}
        for _ in range(runs):
            for name, _label, argv in commands:
                wall, cpu, _output = _run(argv, env, workdir)
                walls[name].append(wall)
                cpus[name].append(cpu)
        fetched = server.count() - before
        base = statistics.median(walls["baseline"])
        base_cpu = statistics.median(cpus["baseline"])
        for name, label, _argv in commands:
            median = statistics.median(walls[name])
            cpu = statistics.median(cpus[name])
            notes = ""
            if name == "script":
                target = ctx.target("warm-cache script run, x import requests", median / base, 1.3)
                notes = "%s; %d token requests in the timed runs" % (_verdict(target), fetched)
            table.add(
                label,
                ms(median),
                ms(min(walls[name])),
                ratio(median / base),
                ms(cpu),
                ratio(cpu / base_cpu if base_cpu else None),
                notes,
            )
        table.note("CPU: user + system time of the child (median), steadier than wall time on a busy machine.")
        table.note(
            "The script: import oauth_gateway, load_gateway_config(path).oauth_config(name), "
            "TokenManager(cache=cache_from_settings('file:<dir>')), get_token."
        )
        return table
    finally:
        server.stop()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- 8: validation


def gateway_document(servers: int, ca_bundle: str = "/etc/ssl/certs/ca.pem") -> Dict[str, Any]:
    """A valid gateway document with ``servers`` OAuth-enabled servers, 100 per config."""
    configs: Dict[str, Any] = {}
    for index in range(servers):
        config_id = "cfg-%04d" % (index // 100)
        entry = {
            "server_name": "server-%04d" % index,
            "description": "benchmark server %d" % index,
            "config": {"command": "npx", "args": ["-y", "mcp-remote", "https://api-%d.example.com/mcp" % index]},
            "oauth_config": {
                "enabled": True,
                "is_remote": True,
                "OAUTH_VERSION": "2.1" if index % 2 else "2.0",
                "OAUTH_CLIENT_ID": "client-%d" % index,
                "OAUTH_CLIENT_SECRET": "${SECRET_%d}" % index,
                "OAUTH_TOKEN_URL": "https://auth-%d.example.com/oauth/token" % index,
                "OAUTH_AUDIENCE": "https://api-%d.example.com" % index,
                "OAUTH_SCOPE": "read write",
                "OAUTH_RESOURCE": ["https://api-%d.example.com/mcp" % index],
                "OAUTH_CA_BUNDLE_PATH": ca_bundle,
                "OAUTH_TOKEN_EXPIRY_BUFFER": 120,
                "OAUTH_TIMEOUT": 10,
            },
        }
        configs.setdefault(config_id, {"mcp_config_name": "config %s" % config_id, "mcp_config": []})
        configs[config_id]["mcp_config"].append(entry)
    return {"common_mcp_gateway_config": {"oauth_token_cache": "memory"}, "mcp_configs": configs}


def validation(ctx: Context, servers: int = 1000) -> Table:
    """``validate_config`` on a gateway document with ``servers`` servers."""
    from oauth_gateway import schema as _schema

    rounds = ctx.scale(3, 1)
    document = gateway_document(servers)
    table = Table(
        "8. Validating a gateway file with %d servers (best of %d)" % (servers, rounds),
        ["what", "ms", "us/server", "x jsonschema alone", "notes"],
    )
    start = time.perf_counter()
    problems = og.validate_config(document)
    first = time.perf_counter() - start
    validator = _schema._validator("gateway-config")
    best_ours = best_raw = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        og.validate_config(document)
        best_ours = min(best_ours, time.perf_counter() - start)
        start = time.perf_counter()
        for _error in validator.iter_errors(document):
            pass
        best_raw = min(best_raw, time.perf_counter() - start)
    text = json.dumps(document)
    start = time.perf_counter()
    json.loads(text)
    parse = time.perf_counter() - start
    table.add(
        "json.loads of the file (%d KiB)" % (len(text) // 1024),
        ms(parse),
        "%.1f" % (parse / servers * 1e6),
        ratio(parse / best_raw),
        "",
    )
    table.add(
        "jsonschema Draft7Validator.iter_errors (compiled)",
        ms(best_raw),
        "%.1f" % (best_raw / servers * 1e6),
        ratio(1.0),
        "",
    )
    table.add(
        "oauth_gateway.validate_config",
        ms(best_ours),
        "%.1f" % (best_ours / servers * 1e6),
        ratio(best_ours / best_raw),
        "%d problems; first call %s ms (loads and compiles the schemas)" % (len(problems), ms(first).strip()),
    )
    return table
