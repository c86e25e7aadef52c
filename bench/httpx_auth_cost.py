"""What the httpx and httpx2 auths add to a request on a cache hit, against a constant-header auth.

Each row drives an auth's flow the way the library's client does for one request that
answers 200: start the flow, take the request it yields, send it the response, see it end.
The floor is the smallest ``Auth`` there is: it sets ``Authorization`` to a constant and
yields. ``TokenAuth`` does the same after the manager's cache hit (no lock, no I/O). Sync
rows time ``sync_auth_flow``; async rows time ``async_auth_flow`` inside one running event
loop. All rows are measured in the same run, round by round in turn, best round kept.

Run from the repository root, in an environment with the package and its ``httpx`` /
``httpx2`` extras (and trustme)::

    python bench/httpx_auth_cost.py            # about 10 s
    python bench/httpx_auth_cost.py --quick    # smaller counts, for a smoke run

The one token request goes to ``tests/servers.py``'s HTTPS server on 127.0.0.1; nothing
else touches the network. A library that is not installed is printed as ``n/a``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

URL = "https://mcp.example.com/mcp"


def _sync_loop(auth: Any, request: Any, response: Any) -> Callable[[int], None]:
    def loop(n: int) -> None:
        for _ in range(n):
            flow = auth.sync_auth_flow(request)
            next(flow)
            try:
                flow.send(response)
            except StopIteration:
                pass

    return loop


def _async_loop(auth: Any, request: Any, response: Any) -> Callable[[int], Any]:
    async def loop(n: int) -> None:
        for _ in range(n):
            flow = auth.async_auth_flow(request)
            await flow.__anext__()
            try:
                await flow.asend(response)
            except StopAsyncIteration:
                pass

    return loop


def _best_ns(rows: Dict[str, Tuple[bool, Callable[[int], Any]]], number: int, rounds: int) -> Dict[str, float]:
    """Best ns per call of each row; rows are timed in turn within each round."""

    async def run_async(loop: Callable[[int], Any], count: int) -> float:
        start = time.perf_counter()
        await loop(count)
        return time.perf_counter() - start

    def run_sync(loop: Callable[[int], Any], count: int) -> float:
        start = time.perf_counter()
        loop(count)
        return time.perf_counter() - start

    async def main() -> Dict[str, float]:
        best: Dict[str, float] = {}
        for is_async, loop in rows.values():  # warm up
            await run_async(loop, 1000) if is_async else run_sync(loop, 1000)
        enabled = gc.isenabled()
        gc.disable()
        try:
            for _ in range(rounds):
                for name, (is_async, loop) in rows.items():
                    seconds = await run_async(loop, number) if is_async else run_sync(loop, number)
                    best[name] = min(best.get(name, float("inf")), seconds / number * 1e9)
        finally:
            if enabled:
                gc.enable()
        return best

    return asyncio.run(main())


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/httpx_auth_cost.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts and fewer rounds")
    args = parser.parse_args(argv)
    from _cases import oauth_block
    from _loopback import guard_loopback, isolate_environment, new_ca, start_server
    from _timing import Table, machine_lines, ns, ratio

    guard_loopback()
    isolate_environment()
    import oauth_gateway as og

    number, rounds = (5_000, 3) if args.quick else (50_000, 7)
    libraries: List[Tuple[str, Optional[Any], Optional[Any]]] = []
    for name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(name)
            adapter = importlib.import_module("oauth_gateway.contrib." + name)
        except ImportError:
            libraries.append((name, None, None))
        else:
            libraries.append((name, module, adapter.TokenAuth))
    versions = {"oauth-gateway": og.__version__}
    versions.update((name, getattr(module, "__version__", None)) for name, module, _ in libraries)
    print("\n".join(["httpx auth cost on a cache hit", "==============================", ""] + machine_lines(versions)))
    print()

    server, ca_bundle = start_server(new_ca())
    try:
        with og.TokenManager() as manager:
            config = og.OAuthConfig.from_dict(oauth_block(server, ca_bundle))
            manager.get_token("bench", config)  # the one token request; every row below is a hit
            rows: Dict[str, Tuple[bool, Callable[[int], Any]]] = {}
            for name, module, token_auth in libraries:
                if module is None:
                    continue

                class ConstantAuth(module.Auth):  # type: ignore[name-defined,misc]
                    def auth_flow(self, request: Any) -> Any:
                        request.headers["Authorization"] = "Bearer constant-token"
                        yield request

                class ConstantFlows(module.Auth):  # type: ignore[name-defined,misc]
                    # The floor without the base class's wrapping generators.
                    def sync_auth_flow(self, request: Any) -> Any:
                        request.headers["Authorization"] = "Bearer constant-token"
                        yield request

                    async def async_auth_flow(self, request: Any) -> Any:
                        request.headers["Authorization"] = "Bearer constant-token"
                        yield request

                request = module.Request("GET", URL)
                response = module.Response(200, request=request)
                ours = token_auth(manager, "bench", config)
                for mode, make in (("sync", _sync_loop), ("async", _async_loop)):
                    rows["%s %s constant" % (name, mode)] = (mode == "async", make(ConstantAuth(), request, response))
                    rows["%s %s flows" % (name, mode)] = (mode == "async", make(ConstantFlows(), request, response))
                    rows["%s %s TokenAuth" % (name, mode)] = (mode == "async", make(ours, request, response))
            best = _best_ns(rows, number, rounds)
    finally:
        server.stop()

    table = Table(
        "Per request on a cache hit (ns, best of %d rounds of %d)" % (rounds, number),
        ["library / flow", "constant", "constant flows", "TokenAuth", "ratio", "ratio to flows"],
    )
    for name, module, _ in libraries:
        for mode in ("sync", "async"):
            if module is None:
                table.add("%s %s" % (name, mode), "n/a", "n/a", "n/a", "n/a", "n/a (not installed)")
                continue
            floor = best["%s %s constant" % (name, mode)]
            flows = best["%s %s flows" % (name, mode)]
            ours_ns = best["%s %s TokenAuth" % (name, mode)]
            table.add(
                "%s %s" % (name, mode),
                ns(floor),
                ns(flows),
                ns(ours_ns),
                ratio(ours_ns / floor),
                ratio(ours_ns / flows),
            )
    table.note("constant: the minimal Auth, whose auth_flow sets Authorization to a constant and yields")
    table.note("constant flows: the same, overriding sync_auth_flow / async_auth_flow (no wrapping generator)")
    table.note("TokenAuth: oauth_gateway.contrib.<library>.TokenAuth, Bearer, token from the manager's cache")
    print(table.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
