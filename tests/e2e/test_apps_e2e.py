"""Apps as batch jobs on the real SLURM, seen in Debian's Chromium: a remote desktop (TigerVNC
+ noVNC) beside a notebook, and a Streamlit dashboard from the user's home that only its
owner can open. Times from Start to a usable app are printed (figures, not limits)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import figure
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.hubtools import Hub, squeue, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

APP_PROFILES = """
defaults:
  backend: slurm
  partition: jupyter
profiles:
  - name: small
    display_name: "Small — 1 core, 2 GiB, 1 h"
    default: true
    resources: {cores: 1, memory: 2GiB, runtime: 1h}
  - name: desktop
    display_name: "Remote desktop — 1 core, 2 GiB, 1 h"
    app: desktop
    resources: {cores: 1, memory: 2GiB, runtime: 1h}
  - name: my-dashboard
    display_name: "My dashboard — 1 core, 2 GiB, 1 h"
    app: streamlit
    resources: {cores: 1, memory: 2GiB, runtime: 1h}
"""
NAMED = """
import hpcspawner
c.JupyterHub.allow_named_servers = True
c.JupyterHub.template_paths = [hpcspawner.hub_templates()]
"""
DASH_DIR = Path("/home/alice/hpcspawner-e2e-dash")
DASH_APP = """\
import hashlib
import pathlib

import streamlit as st

secret = (pathlib.Path.home() / "hpcspawner-e2e-dash" / "secret.txt").read_bytes()
st.title("alice's dashboard")
st.write("checksum " + hashlib.sha256(secret).hexdigest()[:16])
"""


def user_processes(user: str, names: tuple[str, ...]) -> dict[int, str]:
    """{pid: command name} of ``user``'s processes named one of ``names``."""
    out = subprocess.run(["ps", "-u", user, "-o", "pid=,comm="], capture_output=True,
                         text=True, check=False).stdout
    found = {}
    for line in out.splitlines():
        pid, _, comm = line.strip().partition(" ")
        if comm.strip() in names:
            found[int(pid)] = comm.strip()
    return found


def environ_of(pid: int) -> dict[str, str]:
    """A process's environment (root reads it)."""
    with open(f"/proc/{pid}/environ", "rb") as env:
        items = [item.decode(errors="replace") for item in env.read().split(b"\0") if item]
    return dict(item.partition("=")[::2] for item in items)


def job_of(pid: int) -> str:
    """The SLURM job a process runs in (from its environment)."""
    return environ_of(pid).get("SLURM_JOB_ID", "")


@pytest.fixture
def site_profile_script() -> Iterator[tuple[str, str]]:
    """A site's login set-up (/etc/profile.d, as a module system installs one): yields the
    variable it exports and its value."""
    value = secrets.token_hex(8)
    script = Path("/etc/profile.d/hpcspawner-e2e-site.sh")
    script.write_text(f"export HPCSPAWNER_E2E_SITE={value}\n")
    try:
        yield "HPCSPAWNER_E2E_SITE", value
    finally:
        script.unlink(missing_ok=True)


def screen_shows_a_window(png: bytes) -> bool:
    """The noVNC canvas is not blank: a window (the terminal's white) covers part of it."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = image.width * image.height
    light = sum(count for count, rgb in image.getcolors(pixels) or [] if min(rgb) > 200)
    return light / pixels > 0.01


@pytest.fixture
def dashboard_files() -> Iterator[str]:
    """alice's dashboard and a file only alice can read; yields what the app must show."""
    shutil.rmtree(DASH_DIR, ignore_errors=True)
    DASH_DIR.mkdir()
    (DASH_DIR / "app.py").write_text(DASH_APP)
    secret = secrets.token_hex(16).encode()
    (DASH_DIR / "secret.txt").write_bytes(secret)
    os.chmod(DASH_DIR / "secret.txt", 0o600)
    shutil.chown(DASH_DIR, "alice", "alice")
    for name in ("app.py", "secret.txt"):
        shutil.chown(DASH_DIR / name, "alice", "alice")
    yield "checksum " + hashlib.sha256(secret).hexdigest()[:16]
    shutil.rmtree(DASH_DIR, ignore_errors=True)


def login(browser: Any, hub: Hub, user: str) -> Any:
    """A page of a fresh browser context (its own cookies) logged in to the hub as ``user``."""
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.password)
    page.click("#login_submit")
    page.wait_for_url(lambda url: "/hub/login" not in url)  # the hub's home, spawn or a server
    return page


@pytest.mark.browser
def test_a_desktop_beside_a_notebook_shows_a_live_screen_and_stops_alone(
        make_hub: Callable[..., Hub], site_profile_script: tuple[str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    hub = make_hub(APP_PROFILES, extra_config=NAMED).start()
    assert hub.spawn("alice", {"profile": "small"}).status_code in (201, 202)
    hub.wait_ready("alice")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "desktop.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = login(browser, hub, "alice")
            page.goto(f"{hub.url}/hub/spawn/alice/desk")
            page.locator("select#hpcspawner-profile").select_option("desktop")
            started = time.monotonic()
            page.click("form button[type=submit]")
            page.wait_for_url("**/user/alice/desk/desktop/**", timeout=120_000)
            expect(page.locator("#status")).to_have_text("Connected", timeout=60_000)
            canvas = page.locator("#screen canvas")
            shots: list[bytes] = []

            def window_shown() -> bytes | None:
                shots[:] = [canvas.screenshot()]
                return shots[0] if screen_shows_a_window(shots[0]) else None

            try:
                png = wait_for("a window on the remote screen", window_shown, timeout=60,
                               interval=0.5)
            except AssertionError as exc:  # say what ran on the desktop
                ps = subprocess.run(["ps", "-u", "alice", "-o", "pid,args"], text=True,
                                    capture_output=True, check=False).stdout
                raise AssertionError(f"{exc}\nalice's processes:\n{ps}") from None
            finally:
                if shots:
                    shot.write_bytes(shots[0])
            usable = time.monotonic() - started
            assert png == shots[0]
            figure(f"desktop (SLURM): Start → a connected noVNC screen with a terminal: "
                   f"{usable:.1f} s (screenshot {shot})")
            # the hub's home page lists both servers, each with its profile
            page.goto(f"{hub.url}/hub/home")
            expect(page.locator('td.hpcspawner-profile[data-server-name="desk"] '
                                '.hpcspawner-title')).to_have_text(
                "Remote desktop — 1 core, 2 GiB, 1 h")
            expect(page.locator('.hpcspawner-profile[data-server-name=""]')).to_have_text(
                "Default server: Small — 1 core, 2 GiB, 1 h")
            # and when each one's time limit ends (1 h jobs, started a minute ago at most)
            for server in ("desk", ""):
                expect(page.locator(f'.hpcspawner-ends[data-server-name="{server}"]')) \
                    .to_have_text(re.compile(r"^Runs until \d{4}-\d\d-\d\d \d\d:\d\d UTC "
                                             r"\(5\d min left\)\.$"))
            page.screenshot(path=str(ARTIFACTS / "home-two-servers.png"))
        finally:
            browser.close()

    jobs = squeue(hub.hub_id)
    assert sorted(j["comment"].rsplit(":", 1)[1] for j in jobs) == ["", "desk"], jobs
    desk = hub.server_model("alice", "desk")
    assert desk is not None and desk["user_options"]["profile"] == "desktop"
    desk_job = desk["state"]["job_id"]
    vnc = user_processes("alice", ("Xtigervnc", "xterm"))
    assert sorted(set(vnc.values())) == ["Xtigervnc", "xterm"], vnc
    assert {job_of(pid) for pid in vnc} == {desk_job}  # inside alice's desktop job
    # the desktop's terminal has the login environment (the site's /etc/profile.d), which
    # the job itself does not load
    [xterm] = [pid for pid, name in vnc.items() if name == "xterm"]
    name, value = site_profile_script
    assert environ_of(xterm).get(name) == value

    assert hub.api("DELETE", "/users/alice/servers/desk").status_code in (202, 204)
    wait_for("the desktop server to be gone", lambda: hub.server_model("alice", "desk") is None,
             timeout=60)
    wait_for("the VNC server and the terminal to end",
             lambda: not user_processes("alice", ("Xtigervnc", "xterm")), timeout=60)
    wait_for("the desktop's job to leave squeue",
             lambda: desk_job not in {j["id"] for j in squeue(hub.hub_id)}, timeout=60)
    assert hub.proxied("alice").status_code == 200  # the notebook is untouched
    assert hub.server_model("alice")["ready"]


@pytest.mark.browser
def test_alices_dashboard_shows_what_only_alice_can_read_and_bob_cannot_open_it(
        make_hub: Callable[..., Hub], dashboard_files: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    hub = make_hub(APP_PROFILES).start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = login(browser, hub, "alice")
            page.goto(f"{hub.url}/hub/spawn")
            script = page.locator("#hpcspawner-script")
            expect(script).to_be_hidden()  # only dashboard profiles ask for a script
            page.locator("select#hpcspawner-profile").select_option("my-dashboard")
            expect(script).to_be_visible()
            script.fill("hpcspawner-e2e-dash/app.py")
            started = time.monotonic()
            page.click("form button[type=submit]")
            page.wait_for_url("**/user/alice/streamlit/**", timeout=120_000)
            expect(page.get_by_text(dashboard_files)).to_be_visible(timeout=60_000)
            figure(f"dashboard (SLURM): Start → rendered in Chromium: "
                   f"{time.monotonic() - started:.1f} s")
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

            bob = login(browser, hub, "bob")
            response = bob.goto(f"{hub.url}/user/alice/streamlit/")
            bob.wait_for_load_state("networkidle")
            assert response is not None and response.status == 403, (response, bob.url)
            assert dashboard_files not in bob.content()
        finally:
            browser.close()
    [job] = squeue(hub.hub_id)
    assert job["user"] == "alice"
    anonymous = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                f"{hub.url}/user/alice/streamlit/"], capture_output=True,
                               text=True, check=False).stdout
    assert anonymous in ("302", "303"), anonymous  # to the hub's login, never the app


@pytest.fixture
def bobs_script() -> Iterator[Path]:
    """A script of bob's that alice can read, and a link to it in alice's home."""
    path = Path("/home/bob/hpcspawner-e2e-app.py")
    path.write_text("import streamlit\n")
    shutil.chown(path, "bob", "bob")
    link = Path("/home/alice/hpcspawner-e2e-link.py")
    link.unlink(missing_ok=True)
    link.symlink_to(path)
    yield path
    path.unlink(missing_ok=True)
    link.unlink(missing_ok=True)


def test_a_dashboard_script_that_is_not_alices_readable_file_is_refused_before_any_job(
        make_hub: Callable[..., Hub], bobs_script: Path) -> None:
    hub = make_hub(APP_PROFILES).start()
    refusals = {
        "; rm -rf ~": "characters a script name may not have",
        "../../etc/shadow": "may not contain '..'",
        str(bobs_script): "is not in your home directory",
        "hpcspawner-e2e-link.py": "leads outside your home directory",
        "no-such-dashboard.py": "There is no file /home/alice/no-such-dashboard.py",
    }
    for script, words in refusals.items():
        r = hub.spawn("alice", {"profile": "my-dashboard", "script": script})
        assert r.status_code == 400, (script, r.status_code, r.text)
        assert words in r.json()["message"], (script, r.json())
        assert squeue(hub.hub_id) == []
        assert hub.server_model("alice") is None
    assert not list(Path("/home/alice/.hpcspawner").glob("*.token"))
