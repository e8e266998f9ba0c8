"""HTCondor end to end: real hub + proxy, jobs as real users, against the stand-in
(tests/htcondor_standin, started by scripts/test with a 20 s regular and a 1 s fast
negotiator cycle) or, unchanged, against a real pool (HPCSPAWNER_REAL_CONDOR=1)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, figure
from tests.e2e.condor import Condor, find_condor
from tests.hubtools import Hub, listener_user, server_environ, squeue, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.htcondor]

PROFILES = """
defaults:
  backend: htcondor
  hold_timeout: 5s
profiles:
  - name: condor-small
    display_name: "HTCondor small — 1 core, 12 GiB, 12 h"
    default: true
    resources: {cores: 1, memory: 12GiB, runtime: 12h}
  - name: condor-fast
    display_name: "HTCondor fast — 1 core, 1.5 GiB, 12 h"
    resources: {cores: 1, memory: 1536MiB, runtime: 12h}
    htcondor:
      fast_path: {timeout: 8s, fallback: true, slot: {cores: 1, memory: 1536MiB}}
  - name: condor-short
    display_name: "HTCondor short — 1 core, 1.5 GiB, 45 s, more time"
    resources: {cores: 1, memory: 1536MiB, runtime: 45s}
    extend: {step: 1m, max_runtime: 2m}
    htcondor:
      fast_path: {timeout: 8s, fallback: true, slot: {cores: 1, memory: 1536MiB}}
  - name: slurm-small
    display_name: "SLURM small — 1 core, 12 GiB, 12 h"
    backend: slurm
    partition: jupyter
    resources: {cores: 1, memory: 12GiB, runtime: 12h}
  - name: condor-dash
    display_name: "HTCondor dashboard — 1 core, 1.5 GiB, 1 h"
    app: {name: streamlit, script: /opt/hpcspawner/examples/dashboard.py}
    resources: {cores: 1, memory: 1536MiB, runtime: 1h}
    htcondor:
      fast_path: {timeout: 8s, fallback: true, slot: {cores: 1, memory: 1536MiB}}
"""


@pytest.fixture(params=["standin", "real"])
def condor(request: pytest.FixtureRequest) -> Condor:
    found, why = find_condor(request.param)
    if found is None:
        if request.param == "standin" and os.environ.get("CI"):
            pytest.fail(why)
        print(f"\nskipped: {why}")
        pytest.skip(why)
    return found


@pytest.fixture
def condor_hub(make_hub: Callable[..., Hub], condor: Condor) -> Iterator[Hub]:
    hub = make_hub(PROFILES, extra_config=condor.hub_config())
    yield hub
    if hub.proc is not None:  # stop servers as a user would: the hub cleans up after them
        for user in hub.users:
            with contextlib.suppress(Exception):
                hub.stop_server(user)
    hub.stop()
    for job in condor.jobs(hub.hub_id):
        condor.run("condor_rm", str(job["ClusterId"]))


def regular(condor: Condor) -> float:
    """How long a spawn on the regular pool may take: two of its negotiation cycles and the
    server's own start."""
    return 2 * condor.main_cycle() + 60


def server_token(port: int) -> str:
    """The API token in the environment of the server listening on ``port``."""
    return server_environ(port)["JUPYTERHUB_API_TOKEN"]


def test_alice_runs_an_htcondor_profile_as_alice_and_stop_removes_the_job(
        condor_hub: Hub, condor: Condor) -> None:
    hub = condor_hub.start()
    assert hub.spawn("alice", {"profile": "condor-small"}).status_code in (201, 202)
    model = hub.wait_ready("alice", timeout=regular(condor))
    [job] = condor.jobs(hub.hub_id)
    assert (job["Owner"], job["JobStatus"]) == ("alice", 2)
    assert model["state"]["job_id"] == str(job["ClusterId"])
    assert hub.proxied("alice").status_code == 200
    assert listener_user(hub.server_port("alice")) == "alice"

    hub.stop_server("alice")
    hub.wait_stopped("alice")
    wait_for("the job to leave condor_q", lambda: condor.jobs(hub.hub_id) == [], timeout=30)


def test_the_example_dashboard_runs_as_an_htcondor_job_behind_alices_server(
        condor_hub: Hub, condor: Condor) -> None:
    hub = condor_hub.start()
    started = time.monotonic()
    assert hub.spawn("alice", {"profile": "condor-dash"}).status_code in (201, 202)
    hub.wait_ready("alice", timeout=regular(condor))
    ready = time.monotonic() - started
    [job] = condor.jobs(hub.hub_id)
    assert (job["Owner"], job["JobStatus"]) == ("alice", 2)
    # ready means the dashboard answers (the launcher asked it before reporting)
    health = hub.proxied("alice", "streamlit/_stcore/health")
    assert (health.status_code, health.text) == (200, "ok")
    page = hub.proxied("alice", "streamlit/")
    assert page.status_code == 200 and "<title>Streamlit</title>" in page.text
    figure(f"dashboard (HTCondor {condor.kind}, fast path): Start → answering: {ready:.1f} s")
    hub.stop_server("alice")
    hub.wait_stopped("alice")
    wait_for("the job to leave condor_q", lambda: condor.jobs(hub.hub_id) == [], timeout=60)


def test_token_is_in_no_classad_no_history_and_no_file_left_on_disk(
        condor_hub: Hub, condor: Condor) -> None:
    hub = condor_hub.start()
    assert hub.spawn("alice", {"profile": "condor-fast"}).status_code in (201, 202)
    hub.wait_ready("alice", timeout=regular(condor))
    token = server_token(hub.server_port("alice"))
    assert len(token) >= 32
    [job] = condor.jobs(hub.hub_id)
    cluster = str(job["ClusterId"])
    long_ad = condor.run("condor_q", "-all", "-l", cluster, user="bob")
    assert long_ad.returncode == 0 and "HPCSpawnerTag" in long_ad.stdout
    assert "Environment" in long_ad.stdout  # the public place a naive template would use
    assert token not in long_ad.stdout
    files = subprocess.run(["grep", "-rl", "--", token, "/home/alice/.hpcspawner"],
                           capture_output=True, text=True, check=False)
    assert files.stdout == "", f"token left in {files.stdout}"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert token not in ps.stdout
    hub.stop_server("alice")
    hub.wait_stopped("alice")
    # A removed job reaches the history only once its processes have exited (real pool).
    def in_history() -> subprocess.CompletedProcess[str] | None:
        found = condor.run("condor_history", "-l", cluster)
        return found if f"ClusterId = {cluster}" in found.stdout else None

    history = wait_for("the job in condor_history", in_history, timeout=60)
    assert token not in history.stdout
    assert token not in hub.log()


def test_one_hub_runs_bob_on_slurm_and_alice_on_htcondor_at_once(
        condor_hub: Hub, condor: Condor, cluster: None) -> None:
    hub = condor_hub.start()
    assert hub.spawn("bob", {"profile": "slurm-small"}).status_code in (201, 202)
    assert hub.spawn("alice", {"profile": "condor-small"}).status_code in (201, 202)
    hub.wait_ready("bob")
    hub.wait_ready("alice", timeout=regular(condor))
    [slurm_job] = squeue(hub.hub_id)
    [condor_job] = condor.jobs(hub.hub_id)
    assert slurm_job["user"] == "bob" and condor_job["Owner"] == "alice"
    for user in ("alice", "bob"):
        assert hub.proxied(user).status_code == 200
        assert listener_user(hub.server_port(user)) == user
    session = hub.login("carol")
    page = hub.spawn_page(session)
    assert "SLURM small" in page and "HTCondor small" in page


def submit_as(condor: Condor, user: str, description: str) -> str:
    out = subprocess.run(["sudo", "-u", user, condor.tool("condor_submit"), "-terse", "-"],
                         input=description, capture_output=True, text=True, check=True,
                         cwd="/tmp").stdout
    return out.split(".", 1)[0]


def test_a_foreign_ad_with_wrong_types_leaves_every_server_running_across_a_restart(
        condor_hub: Hub, condor: Condor) -> None:
    """bob (a pool user, not necessarily a hub user) submits ads that claim alice's tag and
    qedits them to types our parser does not expect. alice's server stays up and reachable,
    before and after a hub restart, and none of bob's jobs is cancelled by the hub."""
    hub = condor_hub.start()
    assert hub.spawn("alice", {"profile": "condor-small"}).status_code in (201, 202)
    hub.wait_ready("alice", timeout=regular(condor))
    tag = f"hpcspawner:{hub.hub_id}:alice:"
    bad = "executable = /bin/sleep\narguments = 900\n+HPCSpawner = True\n"
    unreadable = submit_as(condor, "bob", bad + f'+HPCSpawnerTag = "{tag}"\nqueue\n')
    edit = condor.run("condor_qedit", unreadable, "EnteredCurrentStatus", '"yesterday"',
                      user="bob")
    assert edit.returncode == 0, edit.stderr
    numeric_tag = submit_as(condor, "bob", bad + "+HPCSpawnerTag = 42\nqueue\n")
    claims_alice = submit_as(condor, "bob", bad + f'+HPCSpawnerTag = "{tag}"\nqueue\n')
    bobs = {unreadable, numeric_tag, claims_alice}
    try:
        for attempt in (1, 2):
            if attempt == 2:
                hub.stop()
                hub.start()
            wait_for("the hub to read and skip bob's unreadable ad", lambda n=attempt:
                     hub.log().count("ignoring an unreadable job ad") >= n, timeout=60)
            wait_for("the hub to disown bob's job with alice's tag", lambda n=attempt:
                     hub.log().count("belongs to 'bob'") >= n, timeout=60)
            model = hub.wait_ready("alice", timeout=60)
            assert model["ready"]
            assert hub.proxied("alice").status_code == 200
        live = condor.run("condor_q", "-all", "-json", "-attributes", "ClusterId,JobStatus")
        statuses = {str(ad["ClusterId"]): ad["JobStatus"] for ad in json.loads(live.stdout)}
        assert all(statuses.get(job) in (1, 2) for job in bobs), statuses
        assert "cancelling it" not in hub.log()
    finally:
        condor.run("condor_rm", *sorted(bobs), user="bob")


def wait_for_main_cycle(condor: Condor) -> None:
    """Return right after the regular negotiator ran: an unmatchable probe job's
    LastRejMatchTime changes (real HTCondor sets it the same way)."""
    timeout = 2 * condor.main_cycle() + 15
    submit = "executable = /bin/true\nrequest_cpus = 4096\n+HPCSpawnerProbe = True\nqueue\n"
    out = subprocess.run(["sudo", "-u", "bob", condor.tool("condor_submit"), "-terse"],
                         input=submit, capture_output=True, text=True, check=True,
                         cwd="/tmp")
    cluster = out.stdout.split(".")[0]

    def last_rejection() -> str:
        ad = condor.run("condor_q", "-all", cluster, "-af", "LastRejMatchTime")
        return ad.stdout.strip()

    try:
        first = wait_for("a first regular cycle", lambda: last_rejection() != "undefined"
                         and last_rejection(), timeout=timeout, interval=0.1)
        wait_for("the next regular cycle", lambda: last_rejection() not in ("", first),
                 timeout=timeout, interval=0.1)
    finally:
        condor.run("condor_rm", cluster)


def time_to_ready(hub: Hub, user: str, profile: str, timeout: float) -> float:
    started = time.monotonic()
    assert hub.spawn(user, {"profile": profile}).status_code in (201, 202)
    hub.wait_ready(user, timeout=timeout)
    return time.monotonic() - started


def test_fast_path_is_ready_well_before_the_regular_pool(condor_hub: Hub,
                                                         condor: Condor) -> None:
    hub = condor_hub.start()
    fast = time_to_ready(hub, "alice", "condor-fast", timeout=60)
    wait_for_main_cycle(condor)
    regular = time_to_ready(hub, "bob", "condor-small", timeout=2 * condor.main_cycle() + 60)
    figure(f"HTCondor {condor.kind}: ready after: fast path {fast:.1f} s, regular pool "
           f"{regular:.1f} s")
    assert fast < 10, "DESY's bar: a notebook in under 10 s"
    assert regular - fast > 8, (fast, regular)


def test_full_fast_path_falls_back_after_its_timeout_and_says_so(
        condor_hub: Hub, condor: Condor) -> None:
    hub = condor_hub.start()
    fillers = fill_reserved_slots(condor)  # every reserved notebook slot is busy
    try:
        events: list[tuple[float, dict[str, Any]]] = []
        started = time.monotonic()
        assert hub.spawn("alice", {"profile": "condor-fast"}).status_code in (201, 202)
        reader = threading.Thread(target=lambda: events.extend(
            (time.monotonic() - started, e) for e in hub.progress("alice", timeout=120)))
        reader.start()
        reader.join(130)
        messages = [(t, e["message"]) for t, e in events]
        fallback = [(t, m) for t, m in messages if "No reserved notebook slot" in m]
        assert fallback, messages
        when, text = fallback[0]
        print(f"\nfell back after {when:.1f} s: {text}")
        assert when >= 8
        assert "moves to the regular pool" in text
        assert events[-1][1].get("ready"), messages
        [job] = condor.jobs(hub.hub_id)
        assert job.get("HPCSpawnerFastPath") is None and job["JobStatus"] == 2
    finally:
        for cluster in fillers:
            condor.run("condor_rm", cluster)


def fill_reserved_slots(condor: Condor) -> list[str]:
    """Occupy every reserved notebook slot with bob's fast-path jobs; their cluster ids."""
    slots = condor.run("condor_status", "-constraint", "IsJupyterSlot =?= true", "-af", "Name")
    fillers = [submit_as(condor, "bob", "executable = /bin/sleep\narguments = 600\n"
                         "+HPCSpawnerFastPath = True\n"
                         "requirements = (TARGET.IsJupyterSlot =?= True)\nqueue\n")
               for _ in slots.stdout.split()]
    condor.run("condor_reschedule")
    wait_for("the reserved slots to fill", lambda: all(
        condor.run("condor_q", "-all", f, "-af", "JobStatus").stdout.strip() == "2"
        for f in fillers), timeout=30)
    return fillers


def test_a_fast_path_job_queued_across_a_hub_restart_falls_back_at_its_first_deadline(
        condor_hub: Hub, condor: Condor) -> None:
    """The fast-path timeout (8 s) counts from the submission, not from the restart."""
    hub = condor_hub.start()
    fillers = fill_reserved_slots(condor)
    try:
        started = time.monotonic()
        # the POST answers only after the hub's slow_spawn_timeout (10 s): do not wait for it
        threading.Thread(target=hub.spawn, args=("alice", {"profile": "condor-fast"}),
                         daemon=True).start()
        [fast] = wait_for("the fast-path job", lambda: condor.jobs(hub.hub_id), timeout=15,
                          interval=0.1)
        assert fast.get("HPCSpawnerFastPath") is True
        # the schedd lists a job before condor_submit returns: kill the hub once it recorded it
        wait_for("the hub to record the job", lambda: f"Submitted job {fast['ClusterId']} "
                 in hub.log(), timeout=15, interval=0.05)
        hub.kill9()
        hub.start()
        restarted = time.monotonic() - started

        def fell_back() -> list[dict[str, object]]:
            return [j for j in condor.jobs(hub.hub_id) if j["ClusterId"] != fast["ClusterId"]]

        wait_for("the fall-back job", fell_back, timeout=40, interval=0.2)
        when = time.monotonic() - started
        print(f"\nhub back after {restarted:.1f} s; fell back {when:.1f} s after the spawn")
        assert when >= 8
        assert when < restarted + 8, "the fast-path timeout started again at the restart"
        [job] = fell_back()
        assert job.get("HPCSpawnerFastPath") is None
        assert "No reserved notebook slot" in hub.log()
        # a hub stopped while it still waits for the resumed spawn keeps the job and its state
        hub.stop()
        assert "alice appears to have stopped" not in hub.log()
        assert [j["ClusterId"] for j in condor.jobs(hub.hub_id)] == [job["ClusterId"]]
        hub.start()
        wait_for("the hub to resume the fall-back job", lambda: f"job {job['ClusterId']} was "
                 "starting; still waiting for it" in hub.log(), timeout=30)
    finally:
        for cluster in fillers:
            condor.run("condor_rm", cluster)


SLURM_ONLY = """
profiles:
  - name: slurm-small
    display_name: "SLURM small — 1 core, 12 GiB, 12 h"
    backend: slurm
    partition: jupyter
    resources: {cores: 1, memory: 12GiB, runtime: 12h}
"""


def test_removing_every_htcondor_profile_keeps_the_running_htcondor_server(
        condor_hub: Hub, condor: Condor) -> None:
    """A config change affects new spawns only: the job is still followed where it runs."""
    hub = condor_hub.start()
    assert hub.spawn("alice", {"profile": "condor-small"}).status_code in (201, 202)
    job_id = hub.wait_ready("alice", timeout=regular(condor))["state"]["job_id"]
    hub.stop()
    hub.reconfigure(profiles=SLURM_ONLY)
    hub.start()
    assert hub.wait_ready("alice")["state"]["job_id"] == job_id
    # three slow polls (5 s) and a sweep: the server and its job stay
    watch_until = time.monotonic() + 3 * 5 + 3
    while time.monotonic() < watch_until:
        assert hub.server_model("alice") is not None, "alice's HTCondor server was dropped"
        [job] = condor.jobs(hub.hub_id)
        assert job["JobStatus"] == 2
        time.sleep(1)
    assert hub.proxied("alice").status_code == 200
    refused = hub.spawn("bob", {"profile": "condor-small"})
    assert refused.status_code == 400
    assert "condor-small" in refused.json()["message"]
    assert "slurm-small" in refused.json()["message"]
    assert condor.jobs(hub.hub_id)[0]["Owner"] == "alice"  # nothing submitted for bob


def test_a_missing_executable_is_refused_at_submit_as_a_configuration_problem(
        make_hub: Callable[..., Hub], condor: Condor) -> None:
    """condor_submit refuses it at once (it is never queued or held): the user is told it is
    the site's configuration, not to try again; the admin reads HTCondor's words."""
    hub = make_hub(PROFILES, extra_config=condor.hub_config()
                   + 'c.HPCSpawner.job_python = "/nonexistent/python3"\n').start()
    tokens_before = set(Path("/home/alice/.hpcspawner").glob("*.token"))
    try:
        r = hub.spawn("alice", {"profile": "condor-fast"})
        assert r.status_code == 500, r.text
        message = r.json()["message"]
        assert "refused the job for 'HTCondor fast" in message
        assert "configuration" in message and "Try again" not in message
        assert "Can't access executable file /nonexistent/python3" in hub.log()
        assert condor.jobs(hub.hub_id) == []
        assert set(Path("/home/alice/.hpcspawner").glob("*.token")) <= tokens_before
    finally:
        hub.stop()


HOLDABLE = PROFILES + """
  - name: condor-huge
    display_name: "HTCondor huge — never matches"
    resources: {cores: 1, memory: 1000GiB, runtime: 1h}
"""


def test_held_job_shows_the_hold_reason_and_does_not_linger(
        make_hub: Callable[..., Hub], condor: Condor) -> None:
    """A job held while it waits (here by its owner, with condor_hold) is shown with
    HTCondor's reason and removed after the profile's hold_timeout (5 s)."""
    hub = make_hub(HOLDABLE, extra_config=condor.hub_config()).start()
    try:
        threading.Thread(target=hub.spawn, args=("alice", {"profile": "condor-huge"}),
                         daemon=True).start()
        [job] = wait_for("the job to queue", lambda: condor.jobs(hub.hub_id), timeout=30)
        held = condor.run("condor_hold", str(job["ClusterId"]), user="alice")
        assert held.returncode == 0, held.stderr
        events = hub.progress("alice", timeout=60)
        assert events[-1].get("failed"), events
        message = events[-1]["message"]
        assert "put on hold and removed: via condor_hold (by user alice)" in message
        assert "Job id for support:" in message
        assert any("held" in e["message"].lower() for e in events[:-1]), events
        wait_for("the held job to be removed", lambda: condor.jobs(hub.hub_id) == [],
                 timeout=30)
    finally:
        hub.stop()


def test_the_docs_example_fast_profile_starts_on_the_fast_path_not_by_fall_back(
        make_hub: Callable[..., Hub], condor: Condor) -> None:
    """docs/examples/profiles-htcondor.yaml's 'quick' profile with the pool layout of
    docs/htcondor.md (the real pool is configured from it): a reserved slot, no fall-back."""
    profiles = (REPO / "docs/examples/profiles-htcondor.yaml").read_text()
    hub = make_hub(profiles, extra_config=condor.hub_config()).start()
    try:
        assert hub.spawn("alice", {"profile": "quick"}).status_code in (201, 202)
        hub.wait_ready("alice", timeout=60)
        log = hub.log()
        assert "to the reserved notebook slots (fast path)" in log
        assert "No reserved notebook slot" not in log
        [job] = condor.jobs(hub.hub_id)
        assert job.get("HPCSpawnerFastPath") is True and job["JobStatus"] == 2
    finally:
        hub.stop_server("alice")
        hub.stop()


def free_slots(condor: Condor) -> tuple[int, int, int]:
    """(unclaimed reserved notebook slots, free cores and all cores of the regular pool), as
    condor_status says (read here on its own, not by the code under test)."""
    out = condor.run("condor_status", "-af", "Name", "State", "Cpus", "TotalSlotCpus",
                     "IsJupyterSlot")
    assert out.returncode == 0, out.stderr
    notebook = free = total = 0
    for line in out.stdout.splitlines():
        _name, state, cpus, slot_cpus, jupyter = line.split()
        if jupyter == "true":
            notebook += state == "Unclaimed"
        else:
            free += int(cpus) if state == "Unclaimed" else 0
            total += int(slot_cpus)
    return notebook, free, total


def reserved_slots(condor: Condor) -> int:
    """How many reserved notebook slots the pool has, free or not."""
    out = condor.run("condor_status", "-constraint", "IsJupyterSlot =?= True", "-af", "Name")
    assert out.returncode == 0, out.stderr
    return len(out.stdout.split())


def test_the_spawn_page_says_what_condor_status_says_and_follows_a_claimed_slot(
        make_hub: Callable[..., Hub], condor: Condor) -> None:
    from tests.e2e.test_choices_e2e import outlook_of

    hub = make_hub(PROFILES, extra_config=condor.hub_config()
                   + "c.HPCSpawner.availability_interval = 1\n").start()
    session = hub.login("bob")
    # an earlier test's job may still hold a slot on a real pool (its startd releases the
    # claim a moment after the job leaves the queue): start from a pool at rest
    notebook, free, total = wait_for("every slot of the pool to be free", lambda: (
        counts if (counts := free_slots(condor))[1] == counts[2] and counts[0] >= 1
        and counts[0] == reserved_slots(condor) else None), timeout=120)

    def says(n: int) -> str:
        return (f"Starts in seconds: {n} reserved notebook slot{'s' if n != 1 else ''} free."
                if n else "The reserved notebook slots are all taken: it will start in the "
                "regular pool, which can take minutes.")

    page = hub.spawn_page(session)
    assert outlook_of(page, "condor-fast") == says(notebook)
    assert outlook_of(page, "condor-small") == f"Can start now: {free} cores of {total} free " \
                                               "in the pool."
    # alice's notebook claims a reserved slot: bob's page follows within the interval
    assert hub.spawn("alice", {"profile": "condor-fast"}).status_code in (201, 202)
    hub.wait_ready("alice", timeout=60)
    assert free_slots(condor)[0] == notebook - 1
    wait_for("the page to show one slot fewer", lambda: outlook_of(
        hub.spawn_page(session), "condor-fast") == says(notebook - 1), timeout=15)
    hub.stop_server("alice")
    hub.wait_stopped("alice")


def test_alices_condor_qedit_of_her_own_job_never_moves_her_route(
        condor_hub: Hub, condor: Condor) -> None:
    """The job's owner may condor_qedit RemoteHost and StartdIpAddr of her running job (HTCondor
    25 protects neither). She does, before her launcher reports: the hub still routes to the
    machine of the slot the startd says runs her job, never to the host she wrote."""
    hub = condor_hub
    # the server starts once this exists (in her home: HTCondor gives jobs a private /tmp)
    go = Path("/home/alice") / f".hpcspawner-go-{hub.hub_id}"
    slow = (f"while [ ! -e {go} ]; do sleep 0.1; done; "
            'exec /opt/hpcspawner/venv/bin/jupyterhub-singleuser "$@"')
    hub.reconfigure(extra_config=condor.hub_config() +
                    f"c.Spawner.cmd = ['/bin/sh', '-c', {slow!r}, 'sh']\n")
    hub.start()
    assert hub.spawn("alice", {"profile": "condor-fast"}).status_code in (201, 202)
    [job] = wait_for("alice's job to run", lambda: [
        j for j in condor.jobs(hub.hub_id) if j.get("JobStatus") == 2] or None,
        timeout=regular(condor))
    cluster = str(job["ClusterId"])
    for attr, value in (("RemoteHost", '"slot1@127.0.0.2"'), ("StartdIpAddr",
                                                                '"<127.0.0.2:9618>"')):
        edit = condor.run("condor_qedit", cluster, attr, value, user="alice")
        assert edit.returncode == 0, f"alice could not edit {attr}: {edit.stderr}"
    [edited] = [j for j in condor.jobs(hub.hub_id) if str(j["ClusterId"]) == cluster]
    assert edited["RemoteHost"] == "slot1@127.0.0.2"  # the attack happened
    model = hub.server_model("alice")
    assert model is not None and not model["ready"]  # before the launcher reports
    go.touch()
    try:
        hub.wait_ready("alice", timeout=60)
    finally:
        go.unlink()
    target = hub.routes()["/user/alice"]["target"]
    slots = condor.run("condor_status", "-constraint", f'JobId == "{cluster}.0"', "-af",
                       "Machine")
    [machine] = slots.stdout.split()
    assert target.split("//", 1)[1].rsplit(":", 1)[0] == machine, (target, machine)
    assert "127.0.0.2" not in target
    assert hub.proxied("alice", "api/status").status_code == 200


def test_the_hub_gives_alices_job_more_time_and_her_own_condor_qedit_cannot(
        condor_hub: Hub, condor: Condor) -> None:
    """More time on HTCondor (docs/htcondor.md#more-time): alice's own edits of her running
    job's AllowedJobDuration and ShadowBday are refused (PROTECTED_JOB_ATTRS); the hub raises
    the limit for her through the REST API (condor_qedit -forward as a queue super user), the
    card's end moves, and the job outlives its first limit because the shadow that enforces
    it got the new one; past extend.max_runtime the hub refuses and nothing changes."""
    hub = condor_hub.start()
    assert hub.spawn("alice", {"profile": "condor-short"}).status_code in (201, 202)
    hub.wait_ready("alice", timeout=regular(condor))
    [job] = condor.jobs(hub.hub_id)
    cluster, born = str(job["ClusterId"]), int(str(job["ShadowBday"]))
    assert (job["JobStatus"], job["AllowedJobDuration"]) == (2, 45)
    for edit in (["AllowedJobDuration", "3600"], ["-forward", "ShadowBday", str(born + 3600)]):
        forward = edit[:1] if edit[0] == "-forward" else []
        own = condor.run("condor_qedit", *forward, f"{cluster}.0", *edit[len(forward):],
                         user="alice")
        assert own.returncode == 1 and \
            f'Failed to set attribute "{edit[-2]}" for job {cluster}.0.' in own.stderr, own
    wait_for("the card to show the scheduler's end",
             lambda: abs(hub.card("alice")["ends"] - (born + 45)) <= 1, timeout=30)

    token = hub.user_token("alice")
    given = hub.extend(token, {"user": "alice", "server": "", "by": "1m"})
    assert given.status_code == 200, given.text[:300]
    [job] = condor.jobs(hub.hub_id)
    assert job["AllowedJobDuration"] == 105
    wait_for("the card's end to move by 1 min",
             lambda: abs(hub.card("alice")["ends"] - (born + 105)) <= 1, timeout=30)
    # the first limit passes (and the pool's check after it): the job and server go on
    while time.time() < born + 45 + 10:
        [job] = condor.jobs(hub.hub_id)
        assert job["JobStatus"] == 2, job
        time.sleep(1)
    assert hub.proxied("alice").status_code == 200

    refused = hub.extend(token, {"user": "alice", "server": "", "by": "1m"})
    assert refused.status_code == 409, refused.text[:300]
    assert "may run 2 min at most (its profile's extend.max_runtime)" in \
        refused.json()["message"]
    [job] = condor.jobs(hub.hub_id)
    assert job["AllowedJobDuration"] == 105
