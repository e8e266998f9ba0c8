"""Session cards and more time on the multi-node cluster (docs/sessions.md), where the hub's
account is a SLURM operator (accounting): alice's card shows her job, its node and limits and
counts down without reload; she extends by 1 h from the card (scontrol shows the new
TimeLimit, the card and her server's end move), up to the profile's maximum; an admin's
``scontrol update TimeLimit=`` shows within a poll and brings the warning to the card and to
JupyterLab; bob cannot extend her job; without JavaScript the facts are on the page and the
keyboard reaches every button."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.e2e.nodes.cluster import HUB_NAME, hub_on_node_network
from tests.e2e.test_apps_e2e import login
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.hubtools import Hub, scontrol_job, squeue, wait_for

pytestmark = [pytest.mark.nodes, pytest.mark.e2e, pytest.mark.slurm, pytest.mark.browser]

PROFILES = """
profiles:
  - name: small
    display_name: "Small — 1 core, 12 GiB, 12 h"
    partition: jupyter
    default: true
    resources: {cores: 1, memory: 12GiB, runtime: 12h}
    extend: {step: 1h, max_runtime: 14h}
"""
WARNING = 300  # the hub's walltime_warning: 5 min
CONFIG = ("import hpcspawner\nc.JupyterHub.template_paths = [hpcspawner.hub_templates()]\n"
          f"c.HPCSpawner.walltime_warning = {WARNING}\n"
          # carol operates the hub: a role with admin:servers (as a site gives its operators)
          'c.JupyterHub.load_roles.append({"name": "operators", "users": ["carol"], '
          '"scopes": ["admin:servers", "read:users"]})\n')


def card_api(hub: Hub, user: str = "alice") -> dict[str, Any]:
    r = hub.api("GET", f"/hpcspawner/sessions/{user}")
    assert r.status_code == 200, r.text[:300]
    [card] = r.json()["cards"]
    return dict(card)


def time_limit(job_id: str) -> str:
    return scontrol_job(job_id)["TimeLimit"]


def user_token(hub: Hub, user: str) -> str:
    r = hub.api("POST", f"/users/{user}/tokens", json={"note": "test", "expires_in": 600})
    assert r.status_code == 201, r.text[:300]
    return str(r.json()["token"])


def extend_rest(hub: Hub, token: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{hub.url}/hub/api/hpcspawner/extend", json=body, timeout=60,
                         headers={"Authorization": f"token {token}"})


def test_alices_card_counts_down_extends_and_warns_and_bob_cannot_touch_it(
        make_hub: Callable[..., Hub], network: dict[str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    hub = hub_on_node_network(make_hub, network[HUB_NAME], PROFILES,
                              more_config=CONFIG).start()
    for user in ("alice", "bob"):
        assert hub.spawn(user, {"profile": "small"}).status_code in (201, 202)
    for user in ("alice", "bob"):
        hub.wait_ready(user, timeout=120)
    jobs = {job["user"]: job["id"] for job in squeue(hub.hub_id)}
    job_id, node = jobs["alice"], scontrol_job(jobs["alice"])["NodeList"]
    assert time_limit(job_id) == "12:00:00"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = login(browser, hub, "alice")
            page.goto(f"{hub.url}/hub/home")
            card = page.locator("#hpcspawner-card-default")
            expect(card).to_be_visible()
            expect(card.locator(".hpcspawner-job-id")).to_have_text(job_id)
            expect(card.locator(".hpcspawner-node")).to_have_text(node)
            expect(card.locator(".hpcspawner-limits")).to_have_text("1 core, 12 GiB")
            expect(card.locator(".hpcspawner-state")).to_have_text(f"Running on {node}.")
            left = card.locator(".hpcspawner-left")
            first = left.inner_text()
            card.screenshot(path=str(ARTIFACTS / "card-1.png"))
            page.wait_for_timeout(5000)  # the two screenshots, 5 s apart
            card.screenshot(path=str(ARTIFACTS / "card-2.png"))
            second = left.inner_text()

            def seconds(text: str) -> int:
                h, m, s = text.split()[0].split(":")
                return int(h) * 3600 + int(m) * 60 + int(s)

            assert 3 <= seconds(first) - seconds(second) <= 8, (first, second)
            assert 11 * 3600 < seconds(second) <= 12 * 3600

            # -- extend by 1 h from the card (a form: it works without JavaScript too)
            before = float(left.get_attribute("data-ends") or 0)
            card.locator("button.hpcspawner-extend").click()
            page.wait_for_url("**/hub/home")
            assert time_limit(job_id) == "13:00:00"
            card = page.locator("#hpcspawner-card-default")
            expect(card.locator(".hpcspawner-extend-note")).to_contain_text("Given 1 h more")
            after = float(card.locator(".hpcspawner-left").get_attribute("data-ends") or 0)
            assert abs(after - before - 3600) <= 61, (before, after)
            # the server sees its new end (its own route asks the hub)
            server_says = hub.proxied("alice", "hpcspawner/session").json()
            assert abs(server_says["ends"] - after) <= 61, server_says

            # -- at the profile's maximum the button says why, and nothing changes
            card.locator("button.hpcspawner-extend").click()
            page.wait_for_url("**/hub/home")
            assert time_limit(job_id) == "14:00:00"
            card = page.locator("#hpcspawner-card-default")
            expect(card.locator("button.hpcspawner-extend")).to_have_attribute(
                "aria-disabled", "true")
            expect(card.locator(".hpcspawner-extend-note")).to_contain_text(
                "the most time its profile allows (14 h)")
            refused = extend_rest(hub, user_token(hub, "alice"),
                                  {"user": "alice", "server": "", "by": "1h"})
            assert refused.status_code == 409, refused.text[:300]
            assert "may run 14 h at most (its profile's extend.max_runtime) and has 14 h " \
                "already" in refused.json()["message"]
            assert time_limit(job_id) == "14:00:00"

            # -- bob: neither the REST API nor a forged form extends alice's job
            assert extend_rest(hub, user_token(hub, "bob"),
                               {"user": "alice", "server": "", "by": "1h"}).status_code == 403
            bob = hub.login("bob")
            xsrf = bob.cookies.get("_xsrf", path="/hub/")
            forged = bob.post(f"{hub.url}/hub/hpcspawner/session", timeout=30, data={
                "user": "alice", "server": "", "action": "extend", "by": "1h", "_xsrf": xsrf})
            assert forged.status_code == 403, forged.text[:300]
            stop = bob.post(f"{hub.url}/hub/hpcspawner/session", timeout=30, data={
                "user": "alice", "server": "", "action": "stop", "_xsrf": xsrf})
            assert stop.status_code == 403
            assert time_limit(job_id) == "14:00:00" and hub.server_model("alice")

            # -- the admins' page lists every session; bob (no admin) gets 403
            assert bob.get(f"{hub.url}/hub/hpcspawner/sessions", timeout=30).status_code == 403
            admin = login(browser, hub, "carol")
            admin.goto(f"{hub.url}/hub/hpcspawner/sessions")
            rows = admin.locator("tr.hpcspawner-admin-row")
            expect(rows).to_have_count(2)
            for user, listed in jobs.items():
                row = admin.locator(f'tr.hpcspawner-admin-row[data-user="{user}"]')
                expect(row.locator(".hpcspawner-job-id")).to_have_text(listed)
                expect(row.locator(".hpcspawner-node")).to_have_text(
                    scontrol_job(listed)["NodeList"])
            admin.fill("#hpcspawner-filter", "bob")
            admin.keyboard.press("Enter")
            expect(rows).to_have_count(1)
            admin.screenshot(path=str(ARTIFACTS / "admin-sessions.png"))

            # -- an admin's scontrol: the card follows within a poll, and warns
            start = scontrol_job(job_id)["StartTime"]
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=5"],
                           check=True)
            shown = wait_for("the card to show the admin's limit", lambda: (
                c if (c := card_api(hub))["ends"] and c["ends"] - time.time() < WARNING
                else None), timeout=15, interval=0.5)  # slow poll: 5 s
            assert shown["warning"].startswith("Your server (Small — 1 core, 12 GiB, 12 h) "
                                               "stops at")
            assert "extend it from its card" in shown["warning"] and shown["can_extend"]
            assert scontrol_job(job_id)["StartTime"] == start
            expect(card.locator(".hpcspawner-card-warning")).to_be_visible(timeout=30_000)
            expect(card.locator("button.hpcspawner-extend")).not_to_have_attribute(
                "aria-disabled", "true")
            banner = page.locator(".hpcspawner-walltime-warning")
            page.goto(f"{hub.url}/hub/token")  # any hub page has the banner
            expect(banner).to_contain_text("stops at")

            # -- JupyterLab itself tells alice
            page.goto(f"{hub.url}/user/alice/lab")
            note = page.locator(".Toastify__toast-body",
                                has_text="This server's batch job ends at")
            expect(note).to_be_visible(timeout=60_000)
            expect(note).to_contain_text("Extend it from its card on the hub's home page")
            page.screenshot(path=str(ARTIFACTS / "lab-warning.png"))

            # -- without JavaScript: the same facts; the keyboard reaches every button
            plain = browser.new_context(java_script_enabled=False).new_page()
            plain.goto(f"{hub.url}/hub/login")
            plain.fill("#username_input", "alice")
            plain.fill("#password_input", hub.password)
            plain.click("#login_submit")
            plain.goto(f"{hub.url}/hub/home")
            text = plain.locator("#hpcspawner-card-default").inner_text()
            for fact in (job_id, node, "1 core, 12 GiB", "left", "(ends 20"):
                assert fact in text, (fact, text)
            reached = set()
            for _ in range(60):
                plain.keyboard.press("Tab")
                reached.add(plain.evaluate(
                    "document.activeElement.className + ' ' + document.activeElement.closest"
                    "('article')?.id"))
            for button in ("hpcspawner-open", "hpcspawner-extend", "hpcspawner-stop"):
                assert any(button in r and "hpcspawner-card-default" in r for r in reached), (
                    button, reached)
        finally:
            browser.close()
