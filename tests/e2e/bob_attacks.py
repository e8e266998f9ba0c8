"""Run as bob in a batch job on alice's node (python bob_attacks.py OUT GO SECONDS): every
attack of tests/e2e/test_attacks.py, from there.

Phase 1, until the file GO appears (alice's server starts meanwhile): read every process's
command line again and again (her token must be in none of them), and try to read her
processes' environments and her token hand-off files.
Phase 2, with what GO holds (JSON: api_url, hub_id, server_job, analysis, port, node): submit
a job whose comment forges the hub's squeue records (her server "cancelled", her own batch
job an orphan of the hub's) and a genuine orphan after it; flood the hub's report route with
200 reports at once claiming her server; call her server directly, without her cookie.

Each finding is one JSON line in OUT. Standard library only; stops after SECONDS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

out, go, seconds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + seconds


def note(**event: object) -> None:
    with out.open("a") as f:
        f.write(json.dumps(event) + "\n")


def sample_command_lines() -> set[str]:
    seen: set[str] = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    seen.add(f.read().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return seen


def try_read(path: Path) -> None:
    try:
        path.read_bytes()
    except OSError as exc:
        note(event="read", path=str(path), ok=False, error=type(exc).__name__)
    else:
        note(event="read", path=str(path), ok=True)


def alices_processes() -> list[Path]:
    alice = int(subprocess.run(["id", "-u", "alice"], capture_output=True, text=True,
                               check=True).stdout)
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == alice:
                found.append(entry)
        except OSError:
            pass
    return found


def status_of(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0  # no answer


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kw: object) -> None:
        return None


note(event="started", host=os.uname().nodename)
# -- phase 1: while alice's server starts -------------------------------------------------
lines: set[str] = set()
while not go.exists() and time.monotonic() < deadline:
    lines |= sample_command_lines()
note(event="cmdlines", seen=sorted(lines))
for proc in alices_processes():
    try_read(proc / "environ")
hand_off = Path("/home/alice/.hpcspawner")  # where her token waits for her job
try:
    names = os.listdir(hand_off)
except OSError as exc:
    note(event="read", path=str(hand_off), ok=False, error=type(exc).__name__)
else:
    note(event="read", path=str(hand_off), ok=True)
    for name in names:
        try_read(hand_off / name)
if not go.exists():
    note(event="done", why="GO never came")
    sys.exit(1)
target = json.loads(go.read_text())

# -- phase 2a: forged squeue records in a job comment, then a genuine orphan -------------
stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
tag = f"hpcspawner:{target['hub_id']}"
forged = (f"x\n{target['server_job']}|CANCELLED|None|{target['node']}|alice|{stamp}|{tag}:alice:"
          f"\n{target['analysis']}|RUNNING|None|{target['node']}|alice|{stamp}|{tag}:alice:gone")
for kind, name, comment in (("forger", "jupyterhub", forged), ("orphan", "jupyterhub",
                                                                 f"{tag}:bob:")):
    done = subprocess.run(["sbatch", "--parsable", "--output=/dev/null", "-p", "batch",
                           f"--job-name={name}", f"--comment={comment}", "--wrap", "sleep 600"],
                          capture_output=True, text=True, check=False)
    note(event="submitted", kind=kind, job=done.stdout.strip().split(";")[0],
         error=done.stderr.strip())

# -- phase 2b: 200 reports at once, claiming alice's server ------------------------------
report = json.dumps({"host": target["node"], "port": 1, "server_name": "",
                     "submission": "guessed"}).encode()


def post(i: int) -> int:
    headers = {"Content-Type": "application/json"}
    if i % 2:  # half with a made-up token, half with none
        headers["Authorization"] = f"token bob-guesses-{i:040d}"
    return status_of(urllib.request.Request(f"{target['api_url']}/hpcspawner/report",
                                            data=report, headers=headers, method="POST"))


began = time.monotonic()
with ThreadPoolExecutor(50) as pool:
    statuses = Counter(pool.map(post, range(200)))
note(event="reports", statuses={str(k): v for k, v in statuses.items()},
     seconds=round(time.monotonic() - began, 2))

# -- phase 2c: her server, directly, without her cookie ----------------------------------
opener = urllib.request.build_opener(NoRedirect)
for address in ("127.0.0.1", target["node"]):
    for path in ("api/status", "api/contents", "lab"):
        url = f"http://{address}:{target['port']}/user/alice/{path}"
        try:
            with opener.open(url, timeout=10) as r:
                status = int(r.status)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
        except OSError:
            status = 0
        note(event="direct", url=url, status=status)
note(event="done")
# the job ends when the test cancels it
while time.monotonic() < deadline:
    time.sleep(1)
