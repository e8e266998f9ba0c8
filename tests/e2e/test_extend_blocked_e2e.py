"""Where the hub cannot give more time (issue 36): on the one-node cluster without accounting
the hub's account cannot be a SLURM operator, so no card offers a button that must fail. The
hub finds out once (its log says why and what to do), the card shows the button disabled with
a short reason beside it (a click changes nothing and says the same), and `hpcspawner check`
warns at the profile's ``extend`` line."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import pytest

from tests.e2e.test_apps_e2e import login
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.hubtools import HUB_ACCOUNT, VENV_BIN, Hub, scontrol_job, squeue

pytestmark = [pytest.mark.e2e, pytest.mark.slurm, pytest.mark.browser]

PROFILES = """
profiles:
  - name: small
    display_name: "Small — 1 core, 12 GiB, 12 h"
    partition: jupyter
    default: true
    resources: {cores: 1, memory: 12GiB, runtime: 12h}
    extend: {step: 1h, max_runtime: 24h}
"""
CONFIG = "import hpcspawner\nc.JupyterHub.template_paths = [hpcspawner.hub_templates()]\n"
REASON = "the hub is not a SLURM operator"


def as_hub_account(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", f"--reuid={HUB_ACCOUNT}", f"--regid={HUB_ACCOUNT}",
                           "--clear-groups", "--", *argv], capture_output=True, text=True,
                          timeout=120, cwd="/")


def test_without_accounting_the_card_says_why_it_cannot_extend_and_check_warns(
        make_hub: Callable[..., Hub]) -> None:
    from playwright.sync_api import expect, sync_playwright

    level = as_hub_account(["sacctmgr", "-n", "-P", "show", "user", HUB_ACCOUNT,
                            "format=AdminLevel"])
    if level.returncode == 0 and level.stdout.strip() in ("Operator", "Administrator"):
        pytest.skip("the running cluster has accounting and the hub is an operator "
                    "(scripts/cluster-up --accounting); this test needs `scripts/cluster-up`")
    hub = make_hub(PROFILES, extra_config=CONFIG).start()
    assert hub.spawn("alice", {"profile": "small"}).status_code in (201, 202)
    hub.wait_ready("alice", timeout=120)
    [job] = squeue(hub.hub_id)
    # the operator is told once, with the fix
    log = hub.log()
    assert log.count("the session cards offer no more time on slurm") == 1, log[-3000:]
    assert "sacctmgr modify user jupyterhub set adminlevel=operator" in log
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = login(browser, hub, "alice")
            page.goto(f"{hub.url}/hub/home")
            card = page.locator("#hpcspawner-card-default")
            expect(card.locator(".hpcspawner-state")).to_contain_text("Running on")
            button = card.locator("button.hpcspawner-extend")
            expect(button).to_have_attribute("aria-disabled", "true")
            note = card.locator(".hpcspawner-extend-note")
            expect(note).to_contain_text(REASON)
            assert button.get_attribute("aria-describedby") == note.get_attribute("id")
            card.screenshot(path=str(ARTIFACTS / "card-extend-blocked.png"))
            expect(button).to_have_class(re.compile(r"\bdisabled\b"))  # (looks it)
            # a form all the same (aria-disabled keeps it in the keyboard's way, with its
            # reason): pressed, it is refused with the reason, and nothing changes
            button.press("Enter")
            page.wait_for_url("**/hub/home")
            expect(page.locator("#hpcspawner-card-default .hpcspawner-extend-note")
                   ).to_contain_text(REASON)
            assert "Invalid user id" not in page.content()
        finally:
            browser.close()
    assert scontrol_job(job["id"])["TimeLimit"] == "12:00:00"
    refused = hub.extend(hub.user_token("alice"), {"user": "alice", "server": "", "by": "1h"})
    assert refused.status_code == 409 and REASON in refused.json()["message"], refused.text
    # hpcspawner check, as the hub's account runs it, warns at the extend line
    checked = as_hub_account([str(VENV_BIN / "hpcspawner"), "check",
                              str(hub.dir / "profiles.yaml")])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "profiles.yaml:8" in checked.stderr and "profile 'small'" in checked.stderr, \
        checked.stderr
    assert "is not a SLURM operator" in checked.stderr or "without accounting" in \
        checked.stderr, checked.stderr
