"""Bad input gets a clear message and loses nothing: forged forms, broken profiles.yaml,
reports with the wrong token, a scheduler that does not answer at submit time."""

from __future__ import annotations

import html
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import EXAMPLE_PROFILES, REPO
from tests.hubtools import Hub, squeue, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]


def test_forged_form_value_shows_the_form_again_with_the_reason(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub().start()
    session = hub.login("alice")
    forged = "huge'><script>alert(1)</script>"
    r = session.post(f"{hub.url}/hub/spawn", data={
        "profile": forged, "_xsrf": session.cookies.get("_xsrf")})
    assert r.status_code == 400  # JupyterHub keeps the status and shows the form again
    page = r.text
    assert "<script>alert(1)</script>" not in page
    assert "Unknown profile" in html.unescape(page)
    assert "choose one of: small, medium, large" in html.unescape(page)
    assert 'id="hpcspawner-profile"' in page  # the form is shown again
    assert squeue(hub.hub_id) == []
    assert hub.server_model("alice") is None


ADMIN_PASSWORD = "an-admin-password-of-at-least-32-characters"
ADMIN_CAROL = ('c.Authenticator.admin_users = {"carol"}\n'
               f'c.SharedPasswordAuthenticator.admin_password = "{ADMIN_PASSWORD}"\n')


def test_hub_started_with_a_broken_profiles_file_refuses_spawns_and_says_so(
        make_hub: Callable[..., Hub]) -> None:
    broken = EXAMPLE_PROFILES.replace("memory: 20GiB", "memory: 20 GB")
    hub = make_hub(broken, extra_config=ADMIN_CAROL).start()
    r = hub.spawn("alice", {"profile": "small"})
    assert r.status_code == 500
    assert r.json()["message"] == ("The hub's list of server profiles is being fixed, so no "
                                   "server can start right now. Please try again later.")
    line = broken.splitlines().index("      memory: 20 GB") + 1
    r = hub.spawn("carol", {"profile": "small"})  # an admin reads file, line and field
    assert f"profiles.yaml:{line}: profile 'medium': field 'resources.memory'" in \
        r.json()["message"]
    assert f"profiles.yaml:{line}: profile 'medium': field 'resources.memory'" in hub.log()
    assert squeue(hub.hub_id) == []


def test_a_broken_edit_keeps_the_last_good_profiles_and_a_good_one_is_picked_up(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(extra_config=ADMIN_CAROL).start()
    session = hub.login("bob")
    assert "Medium — 2 cores, 20 GiB, 6 h" in hub.spawn_page(session)
    path: Path = hub.dir / "profiles.yaml"
    path.write_text(EXAMPLE_PROFILES.replace("runtime: 6h", "runtime: 6 hours"))
    page = hub.spawn_page(session)
    assert "Medium — 2 cores, 20 GiB, 6 h" in page  # still served
    assert "hpcspawner-broken" not in page  # users see the last good profiles, no errors
    admin_page = html.unescape(hub.spawn_page(hub.login("carol", ADMIN_PASSWORD)))
    assert 'id="hpcspawner-broken"' in admin_page and "profiles.yaml:" in admin_page
    assert "'6 hours'" in admin_page
    r = hub.spawn("bob", {"profile": "nope"})
    assert r.status_code == 400 and "small, medium, large" in r.json()["message"]
    assert "is broken, keeping the last good profiles" in hub.log()
    assert "field 'runtime'" in hub.log() or "field 'resources.runtime'" in hub.log()
    path.write_text(EXAMPLE_PROFILES + """
  - name: tiny
    display_name: "Tiny — 1 core, 2 GiB, 1 h"
    resources: {cores: 1, memory: 2GiB, runtime: 1h}
""")
    assert "Tiny — 1 core, 2 GiB, 1 h" in hub.spawn_page(session)


def test_report_route_takes_only_the_servers_own_token_and_only_host_and_port(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub().start()
    assert hub.spawn("alice", {"profile": "small"}).status_code in (201, 202)
    hub.wait_ready("alice")
    url = f"{hub.url}/hub/api/hpcspawner/report"
    body = json.dumps({"host": "evil.example.org", "port": 80, "server_name": ""})
    # a token of alice herself, but not her server's
    token = hub.api("POST", "/users/alice/tokens", json={"note": "t"}).json()["token"]
    for who, tok, status in (("alice's own token", token, 403),
                             ("the admin service's token", hub.token, 403),
                             ("no token", "", 403)):
        headers = {"Authorization": f"token {tok}"} if tok else {}
        r = requests.post(url, data=body, headers=headers, timeout=10)
        assert r.status_code == status, (who, r.status_code, r.text)
    r = requests.post(url, headers={"Authorization": f"token {token}"}, timeout=10,
                      data=json.dumps({"host": "h", "port": 1, "cmd": ["/bin/sh"]}))
    assert r.status_code == 400 and "unknown report fields: cmd" in r.json()["message"]
    assert hub.routes()["/user/alice"]["target"].split("//")[1].split(":")[0] != "evil.example.org"
    assert hub.proxied("alice").status_code == 200


def test_scheduler_down_at_submit_time_gives_a_clear_message_and_leaves_nothing(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub().start()
    subprocess.run([str(REPO / "scripts/cluster-down"), "slurmctld"], check=True)
    try:
        r = hub.spawn("carol", {"profile": "small"})
        if r.status_code == 202:  # slower than slow_spawn_timeout: read the spawn page's events
            message = hub.progress("carol", timeout=120)[-1]["message"]
        else:
            assert r.status_code == 503, r.text
            message = r.json()["message"]
    finally:
        subprocess.run([str(REPO / "scripts/cluster-up")], check=True, capture_output=True)
    assert "The batch system did not accept the job" in message
    assert "sbatch" in hub.log()  # the details (command, stderr) are for the admins' log
    assert not list(Path("/home/carol/.hpcspawner").glob("*.token"))
    wait_for("the server to be gone", lambda: hub.server_model("carol") is None, timeout=30)
    assert squeue(hub.hub_id) == []


def test_a_report_for_another_host_or_a_job_not_yet_running_is_refused(
        make_hub: Callable[..., Hub]) -> None:
    profiles = EXAMPLE_PROFILES + """
  - name: later
    extra_options: ["--begin=now+15"]
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
"""
    hub = make_hub(profiles).start()
    assert hub.spawn("bob", {"profile": "later"}).status_code in (201, 202)
    [token_file] = wait_for("the token hand-off file", lambda: list(
        Path("/home/bob/.hpcspawner").glob("*.token")), timeout=30)
    token = json.loads(token_file.read_text())["token"]  # root reads what only bob's job should
    [job] = squeue(hub.hub_id)
    script = subprocess.run(["scontrol", "write", "batch_script", job["id"], "-"],
                            capture_output=True, text=True, check=True).stdout
    nonce = script.split("HPCSPAWNER_SUBMISSION=", 1)[1].split()[0].strip("'")
    url = f"{hub.url}/hub/api/hpcspawner/report"
    headers = {"Authorization": f"token {token}"}
    body = {"host": "evil.example.org", "port": 80, "server_name": "", "submission": "0ld"}
    r = requests.post(url, json=body, headers=headers, timeout=30)
    assert r.status_code == 409 and "earlier job" in r.json()["message"]
    body["submission"] = nonce
    r = requests.post(url, json=body, headers=headers, timeout=30)
    assert r.status_code == 503 and "not running yet" in r.json()["message"]  # retried
    wait_for("the job to run", lambda: [j for j in squeue(hub.hub_id)
                                        if j["state"] == "RUNNING"], timeout=60)
    r = requests.post(url, json=body, headers=headers, timeout=30)
    assert r.status_code == 409 and "not on evil.example.org" in r.json()["message"]
    hub.wait_ready("bob", timeout=90)  # the real launcher's report is accepted
    assert hub.routes()["/user/bob"]["target"].startswith("http://")
    assert "evil" not in hub.routes()["/user/bob"]["target"]
    assert hub.proxied("bob").status_code == 200
