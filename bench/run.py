"""oauth-gateway benchmarks against a dict floor and the peers, as ratios measured in one run.

Set up once (nothing is installed by this script)::

    python -m venv .venvs/bench && .venvs/bench/bin/pip install -r bench/requirements.txt .

(on Python 3.8 add ``-c ci/constraints-oldest.txt`` to that pip command). Then::

    .venvs/bench/bin/python bench/run.py            # under a minute on 2 cores
    .venvs/bench/bin/python bench/run.py --quick    # smaller counts, for a smoke run
    .venvs/bench/bin/python bench/run.py --only 1,2 --output /tmp/bench.txt

Every connection goes to a token server on 127.0.0.1 (``tests/servers.py``), and the
process refuses any other address. A peer that is not installed or cannot be pointed at
loopback is printed as ``n/a`` with the reason. The exit status is 0 whether or not the
targets are met; the last table says which are.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Dict, List, Optional, Sequence, Union

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

SECTIONS = ("1", "2", "3", "4", "5", "6", "7", "8")
DESCRIPTIONS = {
    "1": "cache hit: get a token (with 2)",
    "2": "cache hit: auth hook (with 1)",
    "3": "8 threads against 1",
    "4": "64 threads, cold cache",
    "5": "16 keys x 64 threads, cold cache",
    "6": "200 forced refreshes",
    "7": "a script's whole run, warm file cache",
    "8": "validating 1,000 servers",
}


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark oauth-gateway against a dict floor and its peers (loopback only).",
        epilog="Sections: " + "; ".join("%s %s" % item for item in DESCRIPTIONS.items()),
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts and fewer rounds (a smoke run)")
    parser.add_argument("--only", default="", help="comma-separated section numbers, e.g. 1,2,6 (default: all)")
    parser.add_argument(
        "--latency", type=float, default=0.2, help="seconds the token endpoint waits in sections 4 and 5 (0.2)"
    )
    parser.add_argument("--output", help="also write the report to this file")
    args = parser.parse_args(argv)
    chosen = [part.strip() for part in args.only.split(",") if part.strip()] or list(SECTIONS)
    unknown = [part for part in chosen if part not in SECTIONS]
    if unknown:
        parser.error("--only: unknown section %s; use numbers from 1 to 8" % ", ".join(unknown))
    if not 0.01 <= args.latency <= 5:
        parser.error("--latency: must be between 0.01 and 5 seconds, got %r" % args.latency)
    args.sections = chosen
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse(argv)
    from _loopback import guard_loopback, isolate_environment, new_ca

    guard_loopback()  # before any peer is imported or built
    isolate_environment()

    import _cases
    import _peers
    import cachetools
    import requests
    import urllib3
    from _timing import Table, load_average, machine_lines

    import oauth_gateway as og

    peers = _peers.all_peers()
    versions: Dict[str, Optional[str]] = {
        "oauth-gateway": og.__version__,
        "requests": requests.__version__,
        "urllib3": urllib3.__version__,
        "cachetools": getattr(cachetools, "__version__", None),
    }
    versions.update((peer.distribution, peer.version) for peer in peers)
    out: List[str] = ["oauth-gateway benchmark", "=======================", ""]
    out += machine_lines(versions)
    out.append("oauth_gateway from %s" % os.path.dirname(os.path.abspath(og.__file__)))
    out.append("command:  python bench/run.py %s" % " ".join(argv if argv is not None else sys.argv[1:]))
    out.append("")
    _emit(out)

    ctx = _cases.Context(new_ca(), peers, args.quick, args.latency)
    plan: List[tuple] = []
    if "1" in args.sections or "2" in args.sections:
        plan.append(("1", _cases.cache_hits))
    plan += [
        ("3", _cases.threads),
        ("4", _cases.cold_cache),
        ("5", _cases.many_keys),
        ("6", _cases.forced_refreshes),
        ("7", _cases.script_run),
        ("8", _cases.validation),
    ]
    started = time.perf_counter()
    for section, run in plan:
        if section != "1" and section not in args.sections:
            continue
        try:
            result: Union[Table, List[Table]] = run(ctx)
        except Exception as exc:  # one broken section must not hide the others
            text = "Section %s (%s) failed: %s: %s\n" % (section, DESCRIPTIONS[section], type(exc).__name__, exc)
            traceback.print_exc(file=sys.stderr)
            out.append(text)
            _emit([text])
            continue
        for table in result if isinstance(result, list) else [result]:
            if section == "1" and "1" not in args.sections and table.title.startswith("1."):
                continue
            if section == "1" and "2" not in args.sections and table.title.startswith("2."):
                continue
            text = table.render()
            out.append(text)
            _emit([text])

    summary = Table("Targets of issue 7 (ratios from this run)", ["target", "measured", "goal", "verdict"])
    for target in ctx.targets:
        summary.add(target.name, target.value_text(), target.limit_text(), target.verdict())
    met = sum(1 for t in ctx.targets if t.met)
    summary.note(
        "%d of %d targets met; total time %.0f s; load average at the end %s."
        % (met, len(ctx.targets), time.perf_counter() - started, load_average())
    )
    text = summary.render()
    out.append(text)
    _emit([text])
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write("\n".join(out))
    return 0


def _emit(lines: List[str]) -> None:
    for line in lines:
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
