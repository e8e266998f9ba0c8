"""Session cards and more time on the multi-node cluster (docs/sessions.md), where the hub's
account is a SLURM operator (accounting): alice's card shows her job, its node and limits and
counts down without reload; she extends by 1 h from the card (scontrol shows the new
TimeLimit, the card and her server's end move), up to the profile's maximum; an admin's
``scontrol update TimeLimit=`` shows within a poll and brings the warning to the card and to
JupyterLab; bob cannot extend her job; without JavaScript the facts are on the page and the
keyboard reaches every button."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable

import pytest

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


def time_limit(job_id: str) -> str:
    return scontrol_job(job_id)["TimeLimit"]


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
    # every hub log line about her server ends with its fields (docs/metrics.md#logs)
    assert f'user=alice server="" job={job_id} profile=small' in hub.log()
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
            # what the job uses, as its server tells the hub (its first report 5 s after it
            # starts; the card's script asks every 15 s)
            expect(card.locator(".hpcspawner-usage")).to_contain_text(
                re.compile(r"^\d+(\.\d)? [MG]iB of 12 GiB memory, \d+\.\d of 1 core"),
                timeout=45_000)
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
            refused = hub.extend(hub.user_token("alice"),
                                 {"user": "alice", "server": "", "by": "1h"})
            assert refused.status_code == 409, refused.text[:300]
            assert "may run 14 h at most (its profile's extend.max_runtime) and has 14 h " \
                "already" in refused.json()["message"]
            assert time_limit(job_id) == "14:00:00"

            # -- bob: neither the REST API nor a forged form extends alice's job
            assert hub.extend(hub.user_token("bob"),
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
                c if (c := hub.card("alice"))["ends"] and c["ends"] - time.time() < WARNING
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

            # -- use by profile from the hub's records: bob's ended session, alice's running
            hub.stop_server("bob")
            hub.wait_stopped("bob")
            admin.goto(f"{hub.url}/hub/hpcspawner/sessions?days=1")
            use = admin.locator('tr.hpcspawner-use-row[data-profile="small"]')
            expect(use.locator(".hpcspawner-use-sessions")).to_have_text("2")
            assert float(use.locator(".hpcspawner-use-core-hours").inner_text()) > 0
            expect(use.locator(".hpcspawner-use-wait")).to_have_text(re.compile(r"^0:\d\d:\d\d$"))
            admin.screenshot(path=str(ARTIFACTS / "admin-use-by-profile.png"))
        finally:
            browser.close()
