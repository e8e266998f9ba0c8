"""The demo as a new user meets it (issue 36): scripts/demo itself, with demo/'s own config and
the example profiles, on ports of its own. It puts the one-node cluster in accounting mode
(``cluster-up --accounting``: the hub a SLURM operator). alice starts Small, extends it by 1 h
from her card (the card's end and SLURM's TimeLimit move by 1 h), runs the two-worker Dask sum
of the demo's notebook in her server, and stops it from the card; carol (the demo's operator)
sees alice's session on the sessions page and reads /hub/metrics; bob sees none of it. With
``--monitoring``, Prometheus scrapes the hub with the example alerts loaded."""

from __future__ import annotations

import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import requests

from tests.e2e.kernel import Kernel
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.hubtools import HUB_DIRS, Hub, scontrol_job, squeue, wait_for

pytestmark = [pytest.mark.demo, pytest.mark.e2e, pytest.mark.slurm, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
PORT = 18700
PROMETHEUS = "127.0.0.1:18790"
PASSWORD = "demo-e2e"
EXAMPLE = ROOT / "examples" / "dask.ipynb"


def demo(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """scripts/demo as a user runs it, on this test's ports and state directory."""
    env = {**os.environ, "HPCSPAWNER_DEMO_STATE": str(state),
           "HPCSPAWNER_DEMO_URL": f"http://127.0.0.1:{PORT}",
           "HPCSPAWNER_DEMO_HUB_PORT": str(PORT + 81),
           "HPCSPAWNER_DEMO_PROXY_API": f"http://127.0.0.1:{PORT + 1}",
           "HPCSPAWNER_DEMO_PASSWORD": PASSWORD, "HPCSPAWNER_DEMO_PROMETHEUS": PROMETHEUS}
    return subprocess.run([str(ROOT / "scripts" / "demo"), *args], env=env, text=True,
                          capture_output=True, timeout=900)


def login(browser: Any, url: str, user: str) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url(lambda u: "/hub/login" not in u)
    return page


def own_token(url: str, user: str) -> str:
    """A token of ``user``'s own, made with her login (no admin in the demo makes it)."""
    s = requests.Session()
    s.get(f"{url}/hub/login", timeout=10)
    s.post(f"{url}/hub/login", timeout=10, data={"username": user, "password": PASSWORD,
                                                 "_xsrf": s.cookies.get("_xsrf")})
    r = s.post(f"{url}/hub/api/users/{user}/tokens", json={"note": "demo e2e"}, timeout=10,
               headers={"X-XSRFToken": s.cookies.get("_xsrf", path="/hub/") or ""})
    assert r.status_code == 201, r.text[:300]
    return str(r.json()["token"])


def example_cells() -> list[str]:
    import json

    cells = json.loads(EXAMPLE.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_the_demo_extends_runs_dask_and_shows_its_operator_everything() -> None:
    from playwright.sync_api import expect, sync_playwright

    HUB_DIRS.mkdir(mode=0o755, parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="demo-", dir=HUB_DIRS))
    url = f"http://127.0.0.1:{PORT}"
    started = demo(state, "--monitoring")
    try:
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-3000:]
        said = started.stdout
        for words in (f"{url}/hub/hpcspawner/sessions", f"{url}/hub/metrics",
                      "Extend by 1 h", "carol", "operator"):
            assert words in said, (words, said)
        assert "accounting: slurmdbd" in started.stderr + said, started.stderr[-2000:]
        assert f"http://{PROMETHEUS}/graph" in said, said
        assert "SUCCESS" in started.stderr  # promtool checked the config and the rules
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                alice = login(browser, url, "alice")
                alice.goto(f"{url}/hub/spawn")
                alice.locator("select#hpcspawner-profile").select_option("small")
                alice.click("form button[type=submit]")
                alice.wait_for_url("**/user/alice/lab**", timeout=180_000)
                alice.goto(f"{url}/hub/home")
                card = alice.locator("#hpcspawner-card-default")
                expect(card.locator(".hpcspawner-state")).to_contain_text("Running on",
                                                                          timeout=30_000)
                job_id = card.locator(".hpcspawner-job-id").inner_text()
                assert scontrol_job(job_id)["TimeLimit"] == "12:00:00"
                extend = card.locator("button.hpcspawner-extend")
                expect(extend).to_have_text("Extend by 1 h")
                expect(extend).not_to_have_attribute("aria-disabled", "true")
                before = float(card.locator(".hpcspawner-left").get_attribute("data-ends") or 0)
                extend.click()
                alice.wait_for_url("**/hub/home")
                card = alice.locator("#hpcspawner-card-default")
                expect(card.locator(".hpcspawner-extend-note")).to_contain_text(
                    "Given 1 h more")
                after = float(card.locator(".hpcspawner-left").get_attribute("data-ends") or 0)
                assert abs(after - before - 3600) <= 61, (before, after)
                assert scontrol_job(job_id)["TimeLimit"] == "13:00:00"
                card.screenshot(path=str(ARTIFACTS / "demo-card-extended.png"))

                # -- the demo's notebook: two Dask workers, as batch jobs of hers, and a sum
                def notebook() -> str:  # (its own event loop, beside Playwright's)
                    kernel = Kernel(cast(Hub, SimpleNamespace(url=url,
                                                              token=own_token(url, "alice"))),
                                    "alice")
                    try:
                        return "".join(kernel.run(code, timeout=400)
                                       for code in example_cells())
                    finally:
                        kernel.shutdown()

                with ThreadPoolExecutor(1) as pool:
                    shown = pool.submit(notebook).result()
                assert "sum: 1000000" in shown, shown

                # -- carol, the operator: alice's session, the use by profile, the metrics
                carol = login(browser, url, "carol")
                carol.goto(f"{url}/hub/hpcspawner/sessions")
                row = carol.locator('tr.hpcspawner-admin-row[data-user="alice"]')
                expect(row.locator(".hpcspawner-job-id")).to_have_text(job_id)
                expect(carol.locator('tr.hpcspawner-use-row[data-profile="small"]')
                       ).to_be_visible()
                carol.screenshot(path=str(ARTIFACTS / "demo-carol-sessions.png"))
                metrics = carol.goto(f"{url}/hub/metrics")
                assert metrics is not None and metrics.status == 200
                assert 'hpcspawner_servers{profile="small",state="running"} 1.0' in \
                    carol.content()

                # -- Prometheus scrapes the hub (with its token) and has the example alerts
                def scraped() -> bool:
                    targets = requests.get(f"http://{PROMETHEUS}/api/v1/targets",
                                           timeout=5).json()["data"]["activeTargets"]
                    return [t["health"] for t in targets] == ["up"]

                wait_for("Prometheus to scrape the demo hub", scraped, timeout=60, interval=1)
                rules = requests.get(f"http://{PROMETHEUS}/api/v1/rules", timeout=5).json()
                names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
                assert "HpcspawnerSchedulerErrors" in names and len(names) == 6, names
                graph = carol.goto(f"http://{PROMETHEUS}/graph")
                assert graph is not None and graph.status == 200

                # -- bob: none of it
                bob = login(browser, url, "bob")
                bob.goto(f"{url}/hub/home")
                expect(bob.locator("#hpcspawner-sessions")).to_contain_text(
                    "No batch session runs or waits now.")
                for path in ("hub/hpcspawner/sessions", "hub/metrics"):
                    seen = bob.goto(f"{url}/{path}")
                    assert seen is not None and seen.status == 403, (path, seen and seen.status)

                # -- alice stops her server from the card; SLURM ends the job
                alice.goto(f"{url}/hub/home")
                alice.locator("#hpcspawner-card-default button.hpcspawner-stop").click()
                wait_for(f"job {job_id} to end", lambda: scontrol_job(job_id).get(
                    "JobState") in ("CANCELLED", "COMPLETED"), timeout=60)
                alice.goto(f"{url}/hub/home")
                expect(alice.locator("#hpcspawner-sessions")).to_contain_text(
                    "No batch session runs or waits now.", timeout=30_000)
            finally:
                browser.close()
    finally:
        stopped = demo(state, "stop")
        assert stopped.returncode == 0, stopped.stderr
        hub_log = state / "hub.log"
        if hub_log.exists():
            (ARTIFACTS / "demo-hub.log").write_text(hub_log.read_text(errors="replace"))
        id_file = state / "hpcspawner_hub_id"  # what this demo left (servers outlive it)
        if id_file.exists():
            for job in squeue(id_file.read_text().strip()):
                subprocess.run(["scancel", job["id"]], check=False)
