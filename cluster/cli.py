"""The ``blastradius`` command line. Only this module reads flags or exits.

Bad input (flags, specs, files, a port in use) is one line on stderr naming
the item, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

from blastradius.cluster.status import OBJECTIVES_NOT_MET, exit_code
from blastradius.targets.spec import parse_duration_ns
from blastradius.workers.run_record import RunRecord, RunStatus

if TYPE_CHECKING:  # the CLI imports what a command needs when it runs
    from blastradius.analysis.load import Runs, Shard
    from blastradius.cluster.scenario import Scenario

T = TypeVar("T")


class UsageError(Exception):
    """Bad input from the user; the message is one line naming the item."""


def one_line(text: str) -> str:
    """``text`` with its unprintable characters (newlines, escapes) written as Python
    escapes, so a message quoting user input stays one line on a terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535; 0 picks a free one)")
    return int(text)


def _seconds(text: str) -> float:
    try:
        ns = parse_duration_ns(text, default_unit="s")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if ns == 0:
        raise argparse.ArgumentTypeError("must be positive")
    return ns / 1e9


def _add_listen_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=0, help="port (default 0: a free one)")


def _add_dependency_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dependency", required=True, metavar="URL", help="base URL of the dependency service"
    )
    parser.add_argument(
        "--dependency-timeout",
        type=_seconds,
        metavar="S",
        help="give up on the dependency after S (e.g. 1s, 500ms); default: never",
    )
    parser.add_argument(
        "--patterns",
        metavar="DOC",
        help="resilience patterns, as a scenario target's keys in YAML, e.g. "
        "'{breaker: {failures: 50%%}, retry: {attempts: 3, budget: 10%%}}'",
    )


def _add_config_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"the whole configuration, YAML or JSON, as {what} (- reads stdin); "
        "instead of the flags below",
    )


def _add_serve_parser(commands: argparse._SubParsersAction) -> None:
    """``serve KIND``'s flags, one declaration each (hence over 60 lines)."""
    serve = commands.add_parser("serve", help="run a reference service until SIGINT/SIGTERM")
    kinds = serve.add_subparsers(dest="kind", required=True, metavar="KIND")

    dependency = kinds.add_parser("dependency", help="endpoints with injected latency and errors")
    _add_config_flag(dependency, "a scenario's dependency: block")
    dependency.add_argument(
        "--latency",
        metavar="SPEC",
        help="per-endpoint latency, e.g. '200*9,30000' or '200ms*9,30s'",
    )
    dependency.add_argument(
        "--errors", metavar="SPEC", help="per-endpoint probability of HTTP 500, e.g. '0*9,0.5'"
    )
    dependency.add_argument(
        "--faults",
        metavar="FILE",
        help="YAML/JSON schedule of latency/error changes over time (- reads stdin)",
    )
    dependency.add_argument("--seed", type=int, help="seed for latency and error draws")
    _add_listen_flags(dependency)

    blocking = kinds.add_parser("blocking", help="gunicorn gthread service, a fixed thread pool")
    _add_dependency_flags(blocking)
    blocking.add_argument(
        "--threads", type=int, default=500, metavar="N", help="threads in the pool (default 500)"
    )
    _add_listen_flags(blocking)

    async_ = kinds.add_parser("async", help="aiohttp service, one shared client session")
    _add_dependency_flags(async_)
    async_.add_argument(
        "--max-connections",
        type=int,
        default=0,
        metavar="N",
        help="connection limit to the dependency (default 0: unlimited)",
    )
    async_.add_argument(
        "--dependency-http2",
        action="store_true",
        help="call the dependency over HTTP/2 (h2c), up to its stream limit a connection",
    )
    _add_listen_flags(async_)

    proxy = kinds.add_parser(
        "proxy", help="a reverse proxy that injects faults per request into a real dependency"
    )
    _add_config_flag(proxy, "a scenario's proxies: entry, without name and port")
    proxy.add_argument("--upstream", metavar="URL", help="where requests go on to")
    proxy.add_argument(
        "--route",
        dest="routes",
        action="append",
        default=[],
        metavar="PATTERN",
        help="endpoint i is the i-th route: a path prefix, or ~REGEX, after an optional "
        "method ('GET /api/'); unmatched requests pass untouched (default: one endpoint, "
        "every path)",
    )
    proxy.add_argument("--latency", metavar="SPEC", help="added per endpoint (default 0)")
    for flag, what in (
        ("--errors", "an error status (--error-status)"),
        ("--resets", "a connection reset"),
        ("--hangs", "no answer at all"),
    ):
        proxy.add_argument(flag, metavar="SPEC", help=f"per-endpoint probability of {what}")
    proxy.add_argument(
        "--bandwidth", metavar="SPEC", help="per-endpoint response bytes/s (0: unlimited)"
    )
    proxy.add_argument("--error-status", type=int, metavar="CODE", help="default 503")
    proxy.add_argument(
        "--faults", metavar="FILE", help="YAML/JSON schedule of changes over time (- reads stdin)"
    )
    proxy.add_argument("--seed", type=int, help="seed for the draws")
    _add_listen_flags(proxy)


def _add_load_parser(commands: argparse._SubParsersAction) -> None:
    load = commands.add_parser(
        "load",
        help="load one URL from flags (no scenario file); prints the run directory",
        description="Send open-loop load at one URL, as a one-target scenario: the same "
        "run directory, rows and exit codes as 'run'. Redirects are recorded, not followed.",
    )
    load.add_argument("url", metavar="URL")
    load.add_argument("--rate", type=float, required=True, metavar="R", help="requests/s in total")
    load.add_argument("--duration", metavar="D", help="how long, e.g. 30s (or --requests)")
    load.add_argument("--requests", type=int, metavar="N", help="how many requests in total")
    load.add_argument(
        "--timeout", default="1s", metavar="D", help="deadline from the intended send (default 1s)"
    )
    load.add_argument(
        "--arrival", default="constant", metavar="KIND", help="constant (default) or poisson"
    )
    load.add_argument(
        "--method", "-X", default="GET", metavar="M", help="HTTP method (default GET)"
    )
    load.add_argument(
        "--header",
        "-H",
        dest="headers",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header (repeatable); ${NAME} in a value reads the environment",
    )
    load.add_argument("--body", metavar="TEXT", help="request body")
    load.add_argument(
        "--json", dest="json_text", metavar="JSON", help="a JSON body (sets Content-Type)"
    )
    load.add_argument("--body-file", metavar="FILE", help="request body from a file")
    load.add_argument(
        "--insecure", "-k", action="store_true", help="do not verify TLS certificates"
    )
    load.add_argument("--ca", metavar="FILE", help="trust this CA (PEM) instead of the system's")
    load.add_argument("--cert", metavar="FILE", help="client certificate (PEM) for mutual TLS")
    load.add_argument("--key", metavar="FILE", help="the client certificate's key (PEM)")
    load.add_argument(
        "--connections",
        type=int,
        default=0,
        metavar="N",
        help="connections opened before the start (default 0: on demand); with --http2, "
        "also the most open",
    )
    load.add_argument(
        "--http2",
        action="store_true",
        help="HTTP/2: h2c with prior knowledge for http://, h2 by ALPN for https://",
    )
    load.add_argument(
        "--streams",
        type=int,
        metavar="N",
        help="HTTP/2 requests at once on a connection (default 100; the server may cap it)",
    )
    load.add_argument("--generators", type=int, metavar="N", help="generator actors")
    load.add_argument("--name", default="load", help="run and target name (default load)")
    load.add_argument("--out", metavar="DIR|URI", help=OUT_HELP)
    load.add_argument("--address", metavar="RAY_ADDRESS", help="join this Ray cluster")
    _add_metrics_flag(load)


OUT_ENV = "BLASTRADIUS_OUT"
OUT_HELP = f"where runs go (default ${OUT_ENV}, else runs/)"


def _add_metrics_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="the embedded cluster's Prometheus endpoint on 127.0.0.1:PORT (default: a free "
        "port, printed at the start); a joined cluster's nodes serve their own",
    )


def build_parser() -> argparse.ArgumentParser:
    """The full ``blastradius`` argument parser: one declaration per flag (hence over 60
    lines; ``serve``'s are in ``_add_serve_parser``)."""
    parser = _Parser(prog="blastradius", description="Distributed HTTP load testing on Ray.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve_parser(commands)
    run = commands.add_parser("run", help="run a scenario on Ray; prints the run directory")
    run.add_argument(
        "scenario",
        metavar="SCENARIO",
        help="a scenario file, or a shipped scenario by name (smoke, tiny, quick/30s, ...)",
    )
    run.add_argument(
        "--out",
        metavar="DIR|URI",
        help=OUT_HELP + "; a URI (s3://, file://) is written by the generators directly",
    )
    run.add_argument(
        "--address",
        metavar="RAY_ADDRESS",
        help="join this Ray cluster (default: $RAY_ADDRESS, else an embedded one)",
    )
    _add_metrics_flag(run)
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario value, e.g. load.rate=500 (repeatable)",
    )
    _add_load_parser(commands)
    analyze = commands.add_parser("analyze", help="availability and tail latency of a run")
    # Optional here only so that ``--ray RUN_DIR`` (where argparse gives RUN_DIR to
    # --ray) means the run with the default address: ``_analyze`` sorts it out.
    analyze.add_argument("run_dir", metavar="RUN_DIR", nargs="?")
    analyze.add_argument(
        "--json", action="store_true", help='print {"targets": {NAME: SUMMARY}} as one JSON object'
    )
    analyze.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="compute the summaries on the Ray cluster at ADDRESS with Ray Data (no "
        "ADDRESS: $RAY_ADDRESS, else an embedded one); for runs on storage every node reads",
    )
    compare = commands.add_parser("compare", help="targets (or runs) side by side, with ratios")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report = commands.add_parser(
        "report", help="an HTML page with the summary and plots of a run (or runs compared)"
    )
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument(
        "--out",
        metavar="DIR",
        help="where report.html and plots/ go (default: the run directory; for several "
        "runs, a compare-<time> directory beside the first)",
    )
    check = commands.add_parser(
        "check", help="judge runs against objectives (slo:): exit 0 if all met, 3 if not"
    )
    check.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    check.add_argument(
        "--slo",
        metavar="FILE",
        help="objectives (YAML, the keys of slo:, and targets: {NAME: {...}}) instead of "
        "each run's own",
    )
    check.add_argument("--junit", metavar="FILE", help="also write JUnit XML there")
    check.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    demo = commands.add_parser(
        "demo", help="the blast-radius experiment on an embedded Ray: table and report"
    )
    demo.add_argument(
        "--full", action="store_true", help="the essay's sizes (1000 req/s, 500 threads)"
    )
    demo.add_argument(
        "--sessions",
        action="store_true",
        help="sessions of 5 calls each (scenarios/quick/30s-sessions.yaml): session availability",
    )
    demo.add_argument("--out", metavar="DIR", help=OUT_HELP)
    demo.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the demo's scenario, e.g. load.duration=10s",
    )
    return parser


def _checked(build: Callable[[], T]) -> T:
    try:
        return build()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _serve_config(args: argparse.Namespace, flags: dict[str, object], parse: Callable) -> Any:
    """A service's configuration: the document ``--config`` names, or one made of its
    flags (``flags``: document key to value, None when not given), read by ``parse`` (the
    same function that reads a scenario's block); errors name the flag or the file."""
    from blastradius.targets.fields import load_document
    from blastradius.targets.validation import FieldError

    given = {key: value for key, value in flags.items() if value not in (None, [])}
    try:
        if args.config is not None:
            if given or args.faults is not None:
                flag = _flag(next(iter(given), "faults"))
                raise UsageError(f"{flag}: the configuration is in --config; give one or the other")
            document = load_document(args.config, "--config")
        else:
            document = given
            if args.faults is not None:
                document["faults"] = load_document(args.faults, "faults file")
        return parse(document)
    except FieldError as exc:
        if args.config is not None:
            raise UsageError(f"--config {args.config}: {exc}") from None
        key = re.split(r"[.\[]", exc.path, maxsplit=1)[0]  # the document key a flag filled
        where = _flag(key) + exc.path[len(key) :]
        raise UsageError(f"{where}: {exc.problem}" if key else str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _flag(key: str) -> str:
    """The ``serve`` flag that fills a configuration document's ``key``."""
    return "--route" if key == "routes" else "--" + key.replace("_", "-")


def _serve_dependency(args: argparse.Namespace) -> None:
    from blastradius.targets import dependency, serving

    flags = {"latency": args.latency, "errors": args.errors, "seed": args.seed}
    if args.config is None and args.latency is None:
        raise UsageError("--latency: missing (or give --config FILE)")
    config = _serve_config(args, flags, dependency.parse_config)
    sock = serving.listen(args.host, args.port)
    serving.run_app(lambda: dependency.make_app(config), sock, handler_cancellation=True)


def _patterns(text: str | None) -> Any:
    """``--patterns``: a YAML mapping of pattern keys (``targets/patterns.py``)."""
    import yaml

    from blastradius.targets.patterns import Patterns, parse_patterns

    if text is None:
        return Patterns()
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"--patterns: not valid YAML: {str(exc).splitlines()[0]}") from None
    return _checked(lambda: parse_patterns(document, "--patterns"))


def _serve_blocking(args: argparse.Namespace) -> None:
    from blastradius.targets import blocking, serving

    patterns = _patterns(args.patterns)
    config = _checked(
        lambda: blocking.BlockingConfig(
            args.dependency, args.threads, args.dependency_timeout, patterns
        )
    )
    blocking.serve(config, serving.listen(args.host, args.port))


def _serve_async(args: argparse.Namespace) -> None:
    from blastradius.targets import async_target, serving

    patterns = _patterns(args.patterns)
    config = _checked(
        lambda: async_target.AsyncConfig(
            args.dependency,
            args.max_connections,
            args.dependency_timeout,
            args.dependency_http2,
            patterns,
        )
    )
    serving.run_app(lambda: async_target.make_app(config), serving.listen(args.host, args.port))


def _serve_proxy(args: argparse.Namespace) -> None:
    from blastradius.targets import proxy, serving
    from blastradius.targets.faults import FAULT_KEYS

    flags = {
        "upstream": args.upstream,
        "routes": args.routes,
        **{key: getattr(args, key) for key in FAULT_KEYS},
        "error_status": args.error_status,
        "seed": args.seed,
    }
    if args.config is None and args.upstream is None:
        raise UsageError("--upstream: missing (or give --config FILE)")
    config = _serve_config(args, flags, proxy.parse_config)
    sock = serving.listen(args.host, args.port)
    serving.run_app(lambda: proxy.make_app(config), sock, handler_cancellation=True)


class _Console:
    """Event lines as they come; progress as one live line on a terminal, else plain lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.live, self.pending = stream, stream.isatty(), False

    def line(self, text: str) -> None:
        if self.pending:
            self.stream.write("\n")
            self.pending = False
        if text:
            self.stream.write(text + "\n")
        self.stream.flush()

    def progress(self, text: str) -> None:
        if not self.live:
            self.line(text)
            return
        self.stream.write("\r\x1b[2K" + text)  # back to the line start, clear it, rewrite
        self.stream.flush()
        self.pending = True


def embedded_ray_environment() -> None:
    """Environment for an embedded Ray cluster, set before Ray is imported.

    The cluster is private to this process and one machine: no token auth, and every
    Ray address on loopback (Ray otherwise binds the machine's outward address).
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def _address(args: argparse.Namespace) -> str | None:
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    if address is not None and args.metrics_port is not None:
        raise UsageError(
            "--metrics-port: only for the embedded cluster; a joined cluster's nodes serve "
            "metrics on their own --metrics-export-port"
        )
    if args.metrics_port:
        _check_free(args.metrics_port)
    if address is None:
        embedded_ray_environment()
    else:
        # Ray retries its first call to a cluster 20 times; the driver checks the port
        # answers first, so what remains to fail (a refused token) is not transient.
        os.environ.setdefault("RAY_NUM_REDIS_GET_RETRIES", "5")
    return address


def _check_free(port: int) -> None:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UsageError(f"--metrics-port {port}: {exc.strerror or exc}") from None


# Set by Ray's job supervisor for a submitted job's entrypoint.
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def _out(out: str | None) -> str:
    """Where runs go: ``--out``, else ``$BLASTRADIUS_OUT`` (unset or empty: ``runs``).
    An empty ``--out``, or a relative location inside a Ray job, is bad input (exit 2)."""
    if out == "":
        raise UsageError("--out: empty; give a directory or a URI")
    if out is not None:
        source = f"--out {out}"
    elif os.environ.get(OUT_ENV):
        out = os.environ[OUT_ENV]
        source = f"{OUT_ENV}={out}"
    else:
        out, source = "runs", "--out runs (the default)"
    if os.environ.get(RAY_JOB_ENV) and "://" not in out and not os.path.isabs(out):
        raise UsageError(
            f"{source}: a relative path inside a Ray job lands in the job's temporary "
            "working directory; give an absolute path or a URI"
        )
    return out


def _run(args: argparse.Namespace) -> int:
    address = _address(args)
    from blastradius.cluster.scenario import load_scenario
    from blastradius.cluster.shipped import scenario_path

    scenario = _checked(lambda: load_scenario(scenario_path(args.scenario), args.overrides))
    return _execute(scenario, _out(args.out), address, args.metrics_port)


def _load(args: argparse.Namespace) -> int:
    address = _address(args)
    from blastradius.cluster.url_run import UrlRun, url_scenario

    fields = {k: v for k, v in vars(args).items() if k in UrlRun.__dataclass_fields__}
    scenario = _checked(lambda: url_scenario(UrlRun(**fields)))
    return _execute(scenario, _out(args.out), address, args.metrics_port)


def _execute(
    scenario: Scenario, out: str, address: str | None, metrics_port: int | None = None
) -> int:
    from blastradius.cluster import driver

    console = _Console(sys.stdout)
    try:
        outcome = driver.run(
            scenario, out, address, console.line, console.progress, metrics_port=metrics_port
        )
    except driver.RunInputError as exc:
        raise UsageError(str(exc)) from None
    console.line("")
    met = True
    if outcome.totals:
        met = _print_analysis(outcome.run_dir)
    if outcome.status != RunStatus.COMPLETED:
        print(f"run {outcome.status}: see {outcome.run_dir}/run.json", file=sys.stderr)
    print(outcome.run_dir, flush=True)
    return exit_code(outcome.status, met)


def _scanned(paths: Sequence[str]) -> tuple[Runs, list[Shard]]:
    """``analysis.scan.open_runs``: manifests and readable shards, no row read."""
    from blastradius.analysis.scan import open_runs

    try:
        return open_runs(paths)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def _file_figures(shards: list[Shard]) -> Callable[[str], Any]:
    """A run's figures by run id, from its shards (``analysis.scan.FileFigures``)."""
    from blastradius.analysis.scan import FileFigures

    return lambda run: FileFigures([shard for shard in shards if shard.run == run])


def _print_analysis(path: str, summarize: Callable | None = None) -> bool:
    """The summary table, the run's objectives (if it has any) and its warnings; whether
    every objective was met. ``summarize``: ``scan.summaries`` or the same on Ray."""
    from blastradius.analysis import scan, slo
    from blastradius.analysis.phases import phase_figures, phase_line
    from blastradius.analysis.series import series_names, shard_series
    from blastradius.analysis.table import session_lines, summary_table, warnings

    runs, shards = _scanned([path])
    order = list(series_names(runs).values())  # runs' targets never merged
    summaries = (summarize or scan.summaries)(shards, shard_series(runs), order)
    for line in summary_table(summaries):
        print(line)
    if len(runs.manifests) == 1:
        steps_of = _step_summaries(runs.manifest, shards)
        for target, figures in _session_figures(runs.manifest, shards).items():
            print()
            for line in session_lines(target, figures, list(steps_of.get(target, {}))):
                print(line)
            if target in steps_of:
                print()
                print(f"{target}, by step:")
                for line in summary_table(steps_of[target], label="step"):
                    print(line)
    phases = [
        phase_line(name, figures)
        for name, figures in phase_figures(shards, shard_series(runs)).items()
        if figures is not None
    ]
    if phases:
        print()
        for line in phases:
            print(line)
    met = True
    judged = slo.judge(runs, figures=_file_figures(shards)) if len(runs.manifests) == 1 else {}
    for verdicts in judged.values():
        print()
        for line in slo.verdict_table(verdicts):
            print(line)
        met = slo.met(verdicts)
    for line in warnings(runs, summaries):
        print(line, file=sys.stderr)
    return met


def _analyze(args: argparse.Namespace) -> None:
    """Summaries from the run's files (``analysis.scan``, or ``analysis.on_ray`` with
    ``--ray``), never the run in memory."""
    if args.run_dir is None:
        if not args.ray:
            raise UsageError("RUN_DIR: missing (blastradius analyze RUN_DIR [--ray [ADDRESS]])")
        args.run_dir, args.ray = args.ray, ""  # ``--ray RUN_DIR``: the default address
    if args.ray is None:
        _analysis(args)
        return
    import ray

    from blastradius.analysis import on_ray
    from blastradius.cluster.joining import RunInputError, connect

    address = args.ray or os.environ.get("RAY_ADDRESS") or None
    _scanned([args.run_dir])  # a run that is not there is named before Ray starts
    try:
        connect(address)
    except RunInputError as exc:
        raise UsageError(str(exc).replace("--address", "--ray", 1)) from None
    try:
        _analysis(args, on_ray.summaries)
    finally:
        ray.shutdown()


def _analysis(args: argparse.Namespace, summarize: Callable | None = None) -> None:
    import json

    from blastradius.analysis import scan
    from blastradius.analysis.phases import phase_figures

    if not args.json:
        _print_analysis(args.run_dir, summarize)
        return
    runs, shards = _scanned([args.run_dir])
    summarize = summarize or scan.summaries

    def target(shard: Shard) -> str:
        return shard.target

    def targets(run: str) -> dict:
        mine = [s for s in shards if s.run == run]
        summaries = summarize(mine, target)
        for name, steps in _step_summaries(runs.manifests[run], mine).items():
            if name in summaries:
                summaries[name]["steps"] = steps
        for name, figures in _session_figures(runs.manifests[run], mine).items():
            if name in summaries:
                summaries[name]["sessions"] = figures
        for name, phases in phase_figures(mine, target).items():
            if name in summaries and phases is not None:
                summaries[name]["phases"] = phases
        return summaries

    if len(runs.manifests) == 1:
        document = {"targets": targets(next(iter(runs.manifests)))}
    else:
        order = sorted({shard.run for shard in shards})
        document = {"runs": {run: {"targets": targets(run)} for run in order}}
    print(json.dumps(document, indent=2))


def _session_figures(manifest: RunRecord, shards: list[Shard]) -> dict[str, dict]:
    """Each session target's sessions (``analysis.sessions``), for one run."""
    from blastradius.analysis.sessions import session_figures

    found = {}
    for name, block in manifest.targets.items():
        if block.steps or block.flow:
            mine = [shard for shard in shards if shard.target == name]
            figures = session_figures(mine, len(block.steps or ()))
            if figures is not None:
                found[name] = figures
    return found


def _step_summaries(manifest: RunRecord, shards: list[Shard]) -> dict[str, dict[str, dict]]:
    """Each session target's summary per step (run.json names its steps), for one run;
    steps without rows are left out."""
    from blastradius.analysis import scan

    found = {}
    for name, block in manifest.targets.items():
        if not block.steps:
            continue
        mine = [shard for shard in shards if shard.target == name]
        summaries = scan.step_summaries(mine, len(block.steps))
        found[name] = {
            f"{i} {step}": summary
            for i, (step, summary) in enumerate(zip(block.steps, summaries, strict=True))
            if summary is not None
        }
    return found


def _compare(args: argparse.Namespace) -> None:
    from blastradius.analysis import compare, scan
    from blastradius.analysis.series import series_names, shard_series
    from blastradius.analysis.table import Column, text_table

    runs, shards = _scanned(args.run_dirs)
    # One series per run and target, in the order given: the first is the baseline.
    order = list(series_names(runs).values())
    summaries = scan.summaries(shards, shard_series(runs), order)
    table = compare(summaries)
    width = max((len(name) for name in summaries), default=0) + 2
    columns = [
        Column("", width, left=True),
        *(Column(h, w) for h, w in (("requests", 10), ("avail", 9), ("goodput/s", 11))),
        *(Column(h, w) for h, w in (("p50 ms", 10), ("p99 ms", 10), ("errors", 9))),
        *(Column(h, w) for h, w in (("avail -base", 13), ("goodput x", 11), ("p99 x", 8))),
    ]
    rows = [
        [
            str(row.name),
            f"{row.requests:.0f}",
            f"{row.availability:.4f}",
            f"{row.goodput_rps:.1f}",
            f"{row.p50_ms:.1f}",
            f"{row.p99_ms:.1f}",
            str(row.errors),
            f"{row.availability_delta:+.4f}",
            f"{row.goodput_x:.2f}",
            f"{row.p99_x:.2f}",
        ]
        for row in table.itertuples()
    ]
    for line in text_table(columns, rows):
        print(line)


def _slo_file(path: str) -> tuple:
    from pathlib import Path

    import yaml

    from blastradius.cluster.slo_keys import parse_objectives_file

    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"--slo {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--slo {path}: not text") from None
    except yaml.YAMLError:
        raise UsageError(f"--slo {path}: not valid YAML") from None
    try:
        return parse_objectives_file(document)
    except ValueError as exc:
        raise UsageError(f"--slo {path}: {exc}") from None


def _check(args: argparse.Namespace) -> int:
    import json

    from blastradius.analysis import slo

    given = None if args.slo is None else _slo_file(args.slo)
    runs, shards = _scanned(args.run_dirs)
    try:
        results = slo.judge(runs, given, _file_figures(shards))
    except ValueError as exc:
        raise UsageError(f"--slo {args.slo}: {exc}") from None
    unjudged = [run for run in runs.manifests if run not in results]
    if unjudged:
        raise UsageError(
            f"{unjudged[0]}: no objectives (its scenario has no slo:; give --slo FILE)"
        )
    if args.junit:
        try:
            with open(args.junit, "w") as out:
                out.write(slo.junit_xml(results))
        except OSError as exc:
            raise UsageError(f"--junit {args.junit}: {exc.strerror or exc}") from None
    met = all(slo.met(verdicts) for verdicts in results.values())
    if args.json:
        document = {
            "met": met,
            "runs": {
                run: {
                    "status": runs.manifests[run].status,
                    "met": slo.met(verdicts),
                    "objectives": [v.to_json() for v in verdicts],
                }
                for run, verdicts in results.items()
            },
        }
        print(json.dumps(document, indent=2))
    else:
        for run, verdicts in results.items():
            print(f"{run}: {'met' if slo.met(verdicts) else 'NOT MET'}")
            for line in slo.verdict_table(verdicts):
                print("  " + line)
    for run, manifest in runs.manifests.items():
        if not manifest.finished:
            print(
                f"warning: {run} is {manifest.status}: judged on the rows it has",
                file=sys.stderr,
            )
    return 0 if met else OBJECTIVES_NOT_MET


def _report(args: argparse.Namespace) -> None:
    from blastradius.analysis.report import write_report

    out = args.out or _report_dir(args.run_dirs)
    try:
        report = write_report(args.run_dirs, out)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there: {exc.strerror or exc}") from None
    print(report.html, flush=True)


def _report_dir(run_dirs: Sequence[str]) -> str:
    """Default report location: the run itself, or a compare-<time> directory beside it."""
    import datetime as dt
    import secrets
    from pathlib import Path

    first = run_dirs[0].rstrip("/")
    if "://" in first:
        raise UsageError(f"{first}: a report of a URI needs --out DIR (a local directory)")
    if len(run_dirs) == 1 and (Path(first) / "run.json").is_file():
        return first
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    parent = Path(first).parent if (Path(first) / "run.json").is_file() else Path(first)
    return str(parent / f"compare-{stamp}-{secrets.token_hex(2)}")


def _demo(args: argparse.Namespace) -> int:
    embedded_ray_environment()
    from blastradius.cluster import demo, driver

    name = demo.scenario_name(full=args.full, sessions=args.sessions)
    out = _out(args.out)
    scenario = _checked(lambda: demo.demo_scenario(name, args.overrides))
    console = _Console(sys.stdout)
    console.line(f"blastradius demo: scenarios/{name}.yaml")
    try:
        outcome = demo.run_demo(scenario, out, console.line, console.progress)
    except driver.RunInputError as exc:
        raise UsageError(str(exc)) from None
    if outcome.status != RunStatus.COMPLETED:
        print(f"run {outcome.status}: see {outcome.run_dir}/run.json", file=sys.stderr)
    print(f"run: {outcome.run_dir}")
    print(f"report: {outcome.report}" if outcome.report else "report: none (no rows)", flush=True)
    return exit_code(outcome.status)


_SERVE = {
    "dependency": _serve_dependency,
    "blocking": _serve_blocking,
    "async": _serve_async,
    "proxy": _serve_proxy,
}


def _serve(args: argparse.Namespace) -> None:
    """``serve KIND``; the server stack is imported for it alone (every other command
    starts without aiohttp)."""
    from blastradius.targets.serving import ServeError

    try:
        _SERVE[args.kind](args)
    except ServeError as exc:
        raise UsageError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    from blastradius.cluster.launch import LaunchError

    args = build_parser().parse_args(argv)
    prog = f"blastradius {args.command}" + (f" {args.kind}" if args.command == "serve" else "")
    try:
        if args.command == "serve":
            _serve(args)
        elif args.command == "run":
            return _run(args)
        elif args.command == "load":
            return _load(args)
        elif args.command == "analyze":
            _analyze(args)
        elif args.command == "check":
            return _check(args)
        elif args.command == "compare":
            _compare(args)
        elif args.command == "report":
            _report(args)
        elif args.command == "demo":
            return _demo(args)
    except UsageError as exc:
        print(f"{prog}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except LaunchError as exc:
        print(f"{prog}: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as a pipe tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0
