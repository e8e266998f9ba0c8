"""Chromium (Debian's, through Playwright) on the real hub: the chooser and JupyterLab."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hubtools import Hub, scontrol_job, squeue

pytestmark = [pytest.mark.e2e, pytest.mark.slurm, pytest.mark.browser]

CHROMIUM = os.environ.get("HPCSPAWNER_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("HPCSPAWNER_ARTIFACTS", "/var/tmp/hpcspawner-artifacts"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


def test_chooser_shows_the_profiles_and_large_ends_in_jupyterlab(
        make_hub: Callable[..., Hub]) -> None:
    from playwright.sync_api import expect, sync_playwright

    hub = make_hub().start()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "chooser.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", "alice")
            page.fill("#password_input", hub.password)
            page.click("#login_submit")
            page.wait_for_url("**/hub/spawn")

            select = page.locator("select#hpcspawner-profile")
            expect(select).to_be_visible()
            labels = select.locator("option").all_inner_texts()
            assert labels == ["Small — 1 core, 12 GiB, 12 h", "Medium — 2 cores, 20 GiB, 6 h",
                              "Large — 2 cores, 48 GiB, 3 h",
                              "Remote desktop — 2 cores, 8 GiB, 4 h",
                              "Dashboard — 1 core, 4 GiB, 8 h",
                              "My dashboard — 1 core, 4 GiB, 8 h"]  # no GPU: not in group gpu
            expect(page.locator(".hpcspawner-description:visible")).to_contain_text(
                "Editing, plotting and small analyses")
            select.select_option("large")
            expect(page.locator(".hpcspawner-description:visible")).to_contain_text(
                "Memory-hungry work")
            page.screenshot(path=str(shot))
            print(f"\nscreenshot of the chooser: {shot}")

            page.click("form button[type=submit]")
            page.wait_for_url("**/user/alice/lab**", timeout=120_000)
            expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
            [job] = squeue(hub.hub_id)
            assert job["user"] == "alice" and job["mem"] == "48G", job
        finally:
            browser.close()


def test_keyboard_only_tab_to_the_dropdown_arrows_to_a_profile_enter_starts_it(
        make_hub: Callable[..., Hub]) -> None:
    from playwright.sync_api import expect, sync_playwright

    hub = make_hub().start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.goto(f"{hub.url}/hub/login")
            page.locator("#username_input").focus()  # the login page's first field
            page.keyboard.type("carol")
            page.keyboard.press("Tab")
            page.keyboard.type(hub.password)
            page.keyboard.press("Enter")
            page.wait_for_url("**/hub/spawn")
            select = page.locator("select#hpcspawner-profile")
            label = page.locator('label[for="hpcspawner-profile"]')
            assert label.inner_text().strip() == "Resources for your server"  # read aloud
            for _ in range(10):  # Tab until the dropdown has the focus
                if page.evaluate("document.activeElement.id") == "hpcspawner-profile":
                    break
                page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "hpcspawner-profile"
            page.keyboard.press("ArrowDown")  # small -> medium
            expect(select).to_have_value("medium")
            page.keyboard.press("Enter")
            page.wait_for_url("**/user/carol/**", timeout=120_000)
        finally:
            browser.close()
    [job] = squeue(hub.hub_id)
    assert (job["user"], job["cpus"], job["mem"]) == ("carol", "2", "20G"), job


def test_without_javascript_every_profiles_choices_show_and_the_form_still_submits(
        make_hub: Callable[..., Hub]) -> None:
    """JavaScript off: nothing reveals the chosen profile's fields, so all show (each named
    by its profile); alice picks the GPU profile, types her memory, picks the model, submits."""
    from playwright.sync_api import expect, sync_playwright

    hub = make_hub(extra_config='c.JupyterHub.load_groups = {"gpu": {"users": ["alice"]}}\n')
    hub.start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(java_script_enabled=False,
                                          viewport={"width": 1100, "height": 900})
            page = context.new_page()
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", "alice")
            page.fill("#password_input", hub.password)
            page.click("#login_submit")
            page.wait_for_url("**/hub/spawn")
            assert page.locator("select#hpcspawner-profile").input_value() == "small"
            memory = page.locator("#hpcspawner-gpu-memory")
            expect(memory).to_be_visible()  # another profile's field, shown without JS
            expect(page.get_by_label("GPU model")).to_be_visible()
            expect(page.locator("#hpcspawner-script")).to_be_visible()
            page.locator("select#hpcspawner-profile").select_option("gpu")
            memory.fill("20GiB")
            page.get_by_label("GPU model").select_option("a100")
            page.click("form button[type=submit]")
            page.wait_for_url("**/spawn-pending/alice**", timeout=60_000)
        finally:
            browser.close()
    model = hub.wait_ready("alice")
    assert model["user_options"] == {"profile": "gpu", "memory": "20GiB", "gpu_model": "a100"}
    [job] = squeue(hub.hub_id)
    assert job["mem"] == "20G", job
    assert scontrol_job(job["id"])["TresPerJob"] == "gres:gpu:a100:1"
