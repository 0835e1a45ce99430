"""One device run: where things go, its children's environment, commands under ``timeout``."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    status: str = "ok"  # ok, failed, timed out, skipped
    notes: List[str] = field(default_factory=list)

    def command(self, rc: int, what: str) -> None:
        if rc in (124, 137):
            self.status = "timed out"
            self.notes.append(f"{what}: cut by its time limit")
        elif rc != 0:
            self.status = "failed" if self.status == "ok" else self.status
            self.notes.append(f"{what}: exit status {rc}")


class Run:
    """One invocation: where things go, what mode, the children's environment."""

    def __init__(self, args):
        self.out, self.work, self.carry = Path(args.out), Path(args.work), Path(args.carry)
        self.smoke, self.device, self.workers = args.smoke, args.device, args.cmnist_workers
        self.began = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self._env: Optional[dict] = None

    def env(self, **extra) -> dict:
        """The children's environment: the carried DomainBed, the repository on the
        path, and where the installed start-up hook is not active, a sitecustomize
        that imports it."""
        if self._env is None:
            env = dict(os.environ, PYTHONUNBUFFERED="1", PIP_NO_INDEX="1",
                       PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_BREAK_SYSTEM_PACKAGES="1")
            if (self.carry / "DomainBed" / "domainbed" / "__init__.py").is_file():
                env["DOMAINBED_ROOT"] = str(self.carry / "DomainBed")
            paths = [str(REPO)]
            probe = subprocess.run([sys.executable, "-c", "import sys; print("
                                    "'domainbed_patch.startup' in sys.modules)"],
                                   capture_output=True, text=True, env=env, timeout=60)
            if probe.stdout.strip() != "True":
                site = self.work / "site"
                site.mkdir(exist_ok=True)
                (site / "sitecustomize.py").write_text("import domainbed_patch.startup\n")
                paths.insert(0, str(site))
            env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep)
            self._env = env
        return dict(self._env, **extra)

    def command(self, argv: List[str], log: Path, limit: float, env=None) -> int:
        """Run ``argv`` under ``timeout``, appending its output to ``log``."""
        limit = max(1, int(limit))
        with open(log, "a") as handle:
            handle.write(f"\n$ {' '.join(argv)}   # limit {limit} s\n")
            handle.flush()
            began = time.monotonic()
            rc = subprocess.call(["timeout", "-k", "5", str(limit), *argv], cwd=REPO,
                                 stdout=handle, stderr=subprocess.STDOUT,
                                 env=env or self.env())
            handle.write(f"# exit status {rc} after {time.monotonic() - began:.1f} s\n")
        return rc
