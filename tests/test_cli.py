"""The command line: one-line errors with exit 2, clean stops."""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blastradius.cluster import launch
from blastradius.cluster.cli import main

DEP = ["--dependency", "http://127.0.0.1:9"]
RUN = str(Path(__file__).parent / "data" / "run-format-0" / "today-20261206T140220Z-bd89")

BAD_INPUT = [
    (["serve", "dependency"], "--latency: missing (or give --config FILE)"),
    (["serve", "dependency", "--config", "/nonexistent.yaml"], "--config '/nonexistent.yaml': No"),
    (
        ["serve", "dependency", "--config", "-", "--errors", "0"],
        "error: --errors: the configuration is in --config; give one or the other",
    ),
    (["serve", "dependency", "--latency", "1", "--seed", "-1"], "error: --seed: must be >= 0"),
    (["serve", "dependency", "--latency", "200*9,3q"], "latency spec item 2 '3q': unknown unit"),
    (["serve", "dependency", "--latency", ""], "latency spec is empty"),
    (
        ["serve", "dependency", "--latency", "1,2", "--errors", "0,7"],
        "errors spec item 2 '7': probability 7 is outside [0, 1]",
    ),
    (
        ["serve", "dependency", "--latency", "1", "--faults", "/nonexistent/faults.yaml"],
        "faults file '/nonexistent/faults.yaml'",
    ),
    (["serve", "dependency", "--latency", "1", "--seed", "x"], "argument --seed"),
    (["serve", "dependency", "--latency", "1", "--port", "65536"], "argument --port"),
    (["serve", "blocking"], "the following arguments are required: --dependency"),
    (["serve", "blocking", *DEP, "--threads", "0"], "threads: must be a whole number of at least"),
    (["serve", "blocking", *DEP, "--threads", "many"], "argument --threads: invalid int value"),
    (["serve", "blocking", "--dependency", "127.0.0.1:9"], "dependency: '127.0.0.1:9' is not an"),
    (["serve", "blocking", *DEP, "--dependency-timeout", "-1s"], "argument --dependency-timeout"),
    (["serve", "async", *DEP, "--max-connections", "-1"], "max-connections: must be 0"),
    (["serve", "async", *DEP, "--dependency-timeout", "1parsec"], "unknown unit 'parsec'"),
    (["serve", "async", *DEP, "--dependency-timeout", "0"], "must be positive"),
    (["serve", "nothing"], "argument KIND: invalid choice: 'nothing'"),
    (
        ["analyze", RUN, "--ray", "127.0.0.1:9"],
        "--ray 127.0.0.1:9: cannot join a Ray cluster: nothing answers there",
    ),
    # ``--ray RUN_DIR``: the run, at the default address; one that is not there is
    # named before Ray starts.
    (["analyze", "--ray", "/nonexistent/run"], "/nonexistent/run: no run.json here"),
    (["analyze"], "RUN_DIR: missing"),
    (["launch"], "argument COMMAND: invalid choice: 'launch'"),
    (["run", "tiny", "--metrics-port", "65536"], "argument --metrics-port"),
    (
        ["run", "tiny", "--address", "127.0.0.1:9", "--metrics-port", "9100"],
        "--metrics-port: only for the embedded cluster",
    ),
]


def _run_main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    code, err = _run_main(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1, err
    assert message in err


def test_faults_beyond_the_endpoints_are_rejected(tmp_path, capsys):
    faults = tmp_path / "faults.yaml"
    faults.write_text("- at: 1s\n  endpoint: 3\n  latency: 1s\n")
    code, err = _run_main(
        ["serve", "dependency", "--latency", "1*3", "--faults", str(faults)], capsys
    )
    assert code == 2
    assert "faults: endpoint 3 does not exist (there are 3)" in err


@pytest.mark.parametrize("kind", ["dependency", "blocking", "async"])
def test_port_in_use_is_exit_2(kind, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--latency", "1"] if kind == "dependency" else DEP
        code, err = _run_main(["serve", kind, *args, "--port", str(port)], capsys)
    assert code == 2
    assert (
        err == f"blastradius serve {kind}: error: --port {port}: address 127.0.0.1:{port} "
        "is already in use\n"
    )


def test_errors_from_the_real_command_have_no_traceback():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "blastradius.cluster",
            "serve",
            "dependency",
            "--latency",
            "lognormal(1s)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(
        "blastradius serve dependency: error: --latency: latency spec item 1"
    )
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("kind", ["dependency", "blocking", "async"])
def test_services_stop_cleanly_on_signals(kind, sig, slow_dependency):
    args = ["--latency", "1"] if kind == "dependency" else ["--dependency", slow_dependency.url]
    service = launch.start(kind, args)
    try:
        service.process.send_signal(sig)
        start = time.monotonic()
        code = service.process.wait(timeout=15)
        elapsed = time.monotonic() - start
        stderr = service.stderr_text()
    finally:
        service.stop()
    assert code == 0
    assert elapsed < 10
    assert "Traceback" not in stderr


def test_a_shipped_scenario_runs_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no scenarios/ here: the name is found in the package
    out = tmp_path / "runs"
    # The shipped file is read and validated: the override's error proves it was found.
    assert main(["run", "tiny", "--set", "load.rate=0", "--out", str(out)]) == 2
    assert "load.rate: must be > 0" in capsys.readouterr().err
    assert main(["run", "essay/30s.yaml", "--set", "load.timeout=x", "--out", str(out)]) == 2
    assert "load.timeout" in capsys.readouterr().err
    assert main(["run", "no-such", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no-such: No such file or directory, nor a shipped scenario" in err
    assert "quick/30s" in err and "smoke" in err
    assert not out.exists()


@pytest.mark.parametrize("command", [["run", "tiny"], ["demo"], ["load", "http://127.0.0.1:9/"]])
def test_a_relative_out_inside_a_ray_job_is_refused(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # as Ray's job supervisor sets
    extra = ["--rate", "1", "--duration", "1s"] if command[0] == "load" else []
    assert main([*command, *extra, "--out", "runs"]) == 2
    assert "--out runs: a relative path inside a Ray job" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


RELATIVE = (
    ": a relative path inside a Ray job lands in the job's temporary working directory; "
    "give an absolute path or a URI"
)


@pytest.mark.parametrize(
    ("flag", "env", "said"),
    [
        (None, None, "--out runs (the default)" + RELATIVE),
        (None, "runs", "BLASTRADIUS_OUT=runs" + RELATIVE),
        (None, "", "--out runs (the default)" + RELATIVE),
        ("rel", "/abs", "--out rel" + RELATIVE),
        ("", "/abs", "--out: empty; give a directory or a URI"),
    ],
)
def test_where_runs_go_inside_a_ray_job_names_its_source(
    flag, env, said, tmp_path, monkeypatch, capsys
):
    """``--out`` wins over ``$BLASTRADIUS_OUT`` (unset or empty: ``runs``), and the error
    names the one that was used."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    if env is None:
        monkeypatch.delenv("BLASTRADIUS_OUT", raising=False)
    else:
        monkeypatch.setenv("BLASTRADIUS_OUT", env)
    out = [] if flag is None else ["--out", flag]
    assert main(["run", "tiny", *out]) == 2
    assert capsys.readouterr().err == f"blastradius run: error: {said}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("flag", "env", "where"),
    [
        (None, None, "runs"),
        (None, "", "runs"),
        (None, "/results", "/results"),
        (None, "s3://bucket/runs", "s3://bucket/runs"),
        ("mine", "/results", "mine"),
    ],
)
def test_runs_go_to_out_else_blastradius_out_else_runs(flag, env, where, monkeypatch):
    """Outside a Ray job any of them may be relative. (A real run into $BLASTRADIUS_OUT:
    tests/test_install.py, and on Kubernetes tests/test_kuberay.py.)"""
    from blastradius.cluster.cli import _out

    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    if env is None:
        monkeypatch.delenv("BLASTRADIUS_OUT", raising=False)
    else:
        monkeypatch.setenv("BLASTRADIUS_OUT", env)
    assert _out(flag) == where


def test_a_metrics_port_in_use_is_exit_2_before_anything_starts(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = tmp_path / "runs"
        code, err = _run_main(
            ["run", "tiny", "--metrics-port", str(port), "--out", str(out)], capsys
        )
    assert code == 2
    assert err == f"blastradius run: error: --metrics-port {port}: Address already in use\n"
    assert not out.exists()
