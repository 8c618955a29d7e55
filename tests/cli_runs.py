"""``blastradius run`` in a child process, for tests that hurt it while it runs: start
it on a scenario document, wait for its rows, find its Ray processes, collect its end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml
from waits import wait_for

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]


@dataclass
class Run:
    """A running ``blastradius run`` (its own session, so signals reach it alone)."""

    process: subprocess.Popen
    out: Path

    def shards(self, target: str, at_least: int, timeout_s: float = 120) -> None:
        """Wait until ``at_least`` of the target's shards are on disk."""
        wait_for(
            lambda: list(self.out.glob(f"*/requests/target={target}/part-*.parquet")),
            lambda shards: len(shards) >= at_least,
            timeout_s=timeout_s,
        )

    def line(self, starting: str) -> str:
        """Read its output up to the first line that contains ``starting``."""
        for line in self.process.stdout:
            if starting in line:
                return line
        raise AssertionError(f"the run ended without a line with {starting!r}")

    def ray_processes(self, name: str) -> list[psutil.Process]:
        """Its descendant processes called ``name`` (``ray::GeneratorActor``, ...)."""
        children = psutil.Process(self.process.pid).children(recursive=True)
        return [p for p in children if p.name() == name]

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to its whole process group, as a terminal's Ctrl-C does."""
        os.killpg(self.process.pid, signum)

    def kill_outright(self, timeout_s: float = 60) -> None:
        """SIGKILL it and every process it started (some of Ray's leave its group), and
        wait until they are all gone, so nothing writes to its output after this."""
        processes = [psutil.Process(self.process.pid)]
        processes += processes[0].children(recursive=True)
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        _, alive = psutil.wait_procs(processes, timeout=timeout_s)
        assert not alive, f"still running after SIGKILL: {alive}"

    def end(self, timeout_s: float = 120) -> tuple[str, str, Path | None]:
        """Its output once it exits, and the run directory it printed last."""
        stdout, stderr = self.process.communicate(timeout=timeout_s)
        last = stdout.strip().splitlines()[-1:] if stdout else []
        return stdout, stderr, Path(last[0]) if last else None


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def running(tmp_path: Path, document: dict) -> Iterator[Run]:
    """``blastradius run`` of ``document`` with ``--out tmp_path/runs``; killed with its
    whole group if the test leaves it running."""
    scenario = tmp_path / f"{document['name']}.yaml"
    scenario.write_text(yaml.safe_dump(document))
    out = tmp_path / "runs"
    process = subprocess.Popen(
        [*BLASTRADIUS, "run", str(scenario), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # As from a terminal: Ctrl-C as the default. A shell without job control starts
        # background jobs (pytest, say) with SIGINT ignored, and children inherit that.
        preexec_fn=_default_sigint,
    )
    try:
        yield Run(process, out)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
