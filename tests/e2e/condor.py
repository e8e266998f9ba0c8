"""Where the HTCondor e2e tests find HTCondor: the stand-in, or a real pool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

STANDIN_BIN = Path("/opt/hpcspawner-condor-standin/bin")
TOOLS = ("condor_submit", "condor_q", "condor_rm", "condor_history", "condor_reschedule",
         "condor_status", "condor_hold", "condor_qedit")


@dataclass(frozen=True)
class Condor:
    kind: str  # "standin" or "real"
    bin_dir: str  # "" = from PATH

    def tool(self, name: str) -> str:
        return str(Path(self.bin_dir) / name) if self.bin_dir else name

    def hub_config(self) -> str:
        return "".join(f"c.HTCondorBackend.{t} = {self.tool(t)!r}\n" for t in TOOLS)

    def run(self, *args: str, user: str = "") -> subprocess.CompletedProcess[str]:
        prefix = ["sudo", "-u", user] if user else []
        return subprocess.run([*prefix, self.tool(args[0]), *args[1:]], capture_output=True,
                              text=True, check=False)

    def main_cycle(self) -> float:
        """Seconds between two cycles of the regular negotiator, as this pool is configured
        (tests wait for events with deadlines derived from it, never a fixed guess)."""
        if self.kind == "standin":
            words = (STANDIN_BIN.parent / "standin.conf").read_text().split()
            return float(words[words.index("--main-cycle") + 1])
        # HTCondor's defaults when the configuration does not set them (docs/htcondor.md)
        cycle = {"NEGOTIATOR_INTERVAL": 60.0, "NEGOTIATOR_CYCLE_DELAY": 20.0}
        for knob in cycle:
            out = self.run("condor_config_val", knob)
            if out.returncode == 0 and out.stdout.strip():
                cycle[knob] = float(out.stdout.strip())
        return max(cycle.values())

    def jobs(self, hub_id: str) -> list[dict[str, object]]:
        """Live jobs (in condor_q) tagged by this hub."""
        out = self.run("condor_q", "-all", "-constraint", "HPCSpawner =?= true", "-json",
                       "-attributes", "ClusterId,Owner,JobStatus,HPCSpawnerTag,RemoteHost,"
                       "HoldReason,HPCSpawnerFastPath,AllowedJobDuration,ShadowBday")
        assert out.returncode == 0, out.stderr
        ads = json.loads(out.stdout) if out.stdout.strip() else []
        return [ad for ad in ads if str(ad.get("HPCSpawnerTag", "")).startswith(
            f"hpcspawner:{hub_id}:")]


def find_condor(kind: str) -> tuple[Condor | None, str]:
    """(Condor, "") when usable, else (None, why not)."""
    if kind == "real":
        if os.environ.get("HPCSPAWNER_REAL_CONDOR") != "1":
            return None, "real HTCondor pool: set HPCSPAWNER_REAL_CONDOR=1 to run against it"
        if not shutil.which("condor_q"):
            return None, "real HTCondor pool: condor_q is not on PATH"
        return Condor("real", ""), ""
    if not (STANDIN_BIN / "condor_q").exists():
        return None, "HTCondor stand-in not installed: run sudo tests/htcondor_standin/standin-up"
    probe = subprocess.run([str(STANDIN_BIN / "condor_q")], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        return None, f"HTCondor stand-in not answering: {probe.stdout}{probe.stderr}".strip()
    return Condor("standin", str(STANDIN_BIN)), ""
