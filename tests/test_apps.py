"""Apps: what the job runs for a profile's app, and the user's dashboard script."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from hpcspawner.apps import (
    Launch,
    ScriptError,
    check_script_path,
    launch_for,
    server_command,
)
from hpcspawner.launcher import app_environment
from hpcspawner.profiles import ProfileError, parse_profiles

PYTHON = "/opt/venv/bin/python3"
PROFILES = parse_profiles("""\
apps:
  vscode:
    title: VS Code
    command: [code-server, --auth=none, "--socket={unix_socket}"]
    ready_path: /vscode/healthz
    timeout: 2m
profiles:
  - {name: nb, resources: {memory: 1GiB, runtime: 1h}}
  - {name: desk, app: desktop, resources: {memory: 1GiB, runtime: 1h}}
  - name: desk-site
    app: {name: desktop, xstartup: /etc/site/xstartup}
    resources: {memory: 1GiB, runtime: 1h}
  - {name: dash, app: streamlit, resources: {memory: 1GiB, runtime: 1h}}
  - name: dash-fixed
    app: {name: streamlit, script: /opt/site/dash.py, timeout: 90s}
    resources: {memory: 1GiB, runtime: 1h}
  - {name: code, app: vscode, resources: {memory: 1GiB, runtime: 1h}}
""")


def launch(name: str, script: str = "") -> Launch:
    return launch_for(PROFILES.by_name[name], PROFILES.apps, PYTHON, script)


def proxy_entry(launch: Launch) -> dict[str, Any]:
    """What the server's jupyter-server-proxy reads: the config file the launcher puts on
    JUPYTER_CONFIG_PATH, run as Jupyter runs it, with the job's environment."""
    env = dict(launch.env)
    app_environment(env)
    [config_dir] = env["JUPYTER_CONFIG_PATH"].split(":")
    code = (Path(config_dir) / "jupyter_server_config.py").read_text()
    c = Config()
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        exec(code, {"c": c})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    servers: dict[str, Any] = c.ServerProxy.servers
    return servers


def test_the_sites_absolute_cmd_is_what_the_job_runs() -> None:
    cmd = server_command(["/opt/jupyter/bin/jupyterhub-singleuser"], ["--debug"], PYTHON)
    assert cmd == ["/opt/jupyter/bin/jupyterhub-singleuser", "--debug"]


def test_a_bare_name_is_taken_from_beside_the_jobs_python() -> None:
    # sudo's secure_path would not find it: "command not found" in the job (batchspawner)
    assert server_command(["jupyterhub-singleuser"], [], PYTHON) == [
        "/opt/venv/bin/jupyterhub-singleuser"]


def test_a_notebook_keeps_the_sites_landing_page_and_waits_for_nothing_more() -> None:
    nb = launch("nb")
    assert (nb.url, nb.ready_path, dict(nb.env)) == ("", "", {})


def test_a_desktop_lands_on_novnc_with_the_shipped_or_the_sites_session() -> None:
    desk = launch("desk")
    assert desk.url == "/desktop/"
    env = dict(desk.env)
    app_environment(env)  # in the job: the session shipped with the job's own hpcspawner
    session = Path(env["JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP"])
    assert session.name == "xstartup" and os.access(session, os.X_OK)
    env = dict(launch("desk-site").env)
    app_environment(env)
    assert env["JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP"] == "/etc/site/xstartup"


def test_a_dashboard_runs_the_users_script_behind_the_server_on_a_private_socket() -> None:
    dash = launch("dash", "/home/alice/app.py")
    assert (dash.url, dash.ready_path) == ("/streamlit/", "streamlit/_stcore/health")
    entry = proxy_entry(dash)["streamlit"]
    assert entry["command"][:3] == ["/opt/venv/bin/streamlit", "run", "/home/alice/app.py"]
    assert "unix://{unix_socket}" in entry["command"]  # no TCP port other users could reach
    assert entry["unix_socket"] is True and entry["absolute_url"] is True
    assert proxy_entry(launch("dash-fixed"))["streamlit"]["command"][2] == "/opt/site/dash.py"
    with pytest.raises(ScriptError, match="name its script"):
        launch("dash")


def test_a_custom_app_is_run_by_jupyter_server_proxy_with_its_own_placeholders() -> None:
    code = launch("code")
    assert (code.url, code.ready_path, code.title) == ("/vscode/", "vscode/healthz", "VS Code")
    entry = proxy_entry(code)["vscode"]
    assert entry["command"] == ["code-server", "--auth=none",
                                "--socket={unix_socket}"]
    assert entry["timeout"] == 120.0 and entry["unix_socket"] is True


@pytest.mark.parametrize(("raw", "path"), [
    ("app.py", "/home/alice/app.py"),
    ("dashboards/sales-2024.py", "/home/alice/dashboards/sales-2024.py"),
    ("~/dashboards/app.py", "/home/alice/dashboards/app.py"),
    ("/home/alice/app.py", "/home/alice/app.py"),
    ("  app.py ", "/home/alice/app.py"),
])
def test_a_script_in_the_home_is_taken(raw: str, path: str) -> None:
    assert check_script_path(raw, "/home/alice") == path


@pytest.mark.parametrize(("raw", "words"), [
    ("; rm -rf ~", "characters a script name may not have"),
    ("app.py; rm -rf ~", "characters a script name may not have"),
    ("$(id).py", "characters a script name may not have"),
    ("a b.py", "characters a script name may not have"),
    ("../../etc/shadow", "may not contain '..'"),
    ("dash/../../bob/app.py", "may not contain '..'"),
    ("/home/bob/app.py", "is not in your home directory"),
    ("/home/alicex/app.py", "is not in your home directory"),
    ("/etc/shadow", "is not in your home directory"),
    ("notes.txt", "is not a Python file"),
    ("", "Name the dashboard's script"),
    (None, "Name the dashboard's script"),
    (["app.py"], "Name the dashboard's script"),
])
def test_anything_else_is_refused_with_a_sentence(raw: object, words: str) -> None:
    with pytest.raises(ScriptError, match=words.replace("(", r"\(").replace("$", r"\$")):
        check_script_path(raw, "/home/alice")


@pytest.mark.parametrize(("text", "words"), [
    ("profiles:\n  - {name: a, app: vnc, resources: {memory: 1GiB, runtime: 1h}}\n",
     "profiles.yaml:2: profile 'a': app 'vnc' is not defined; use one of notebook, desktop, "
     "streamlit"),
    ("profiles:\n  - name: a\n    app: {name: desktop, script: /x.py}\n"
     "    resources: {memory: 1GiB, runtime: 1h}\n", "'script' is for app 'streamlit' only"),
    ("profiles:\n  - name: a\n    app: {name: streamlit, script: x.py}\n"
     "    resources: {memory: 1GiB, runtime: 1h}\n", "must be an absolute path"),
    ("apps:\n  code:\n    command: [code-server]\n"
     "profiles:\n  - {name: a, resources: {memory: 1GiB, runtime: 1h}}\n",
     "profiles.yaml:3: app 'code': field 'command': Value error, the command must contain "),
    ("apps:\n  desktop:\n    command: ['x {port}']\n"
     "profiles:\n  - {name: a, resources: {memory: 1GiB, runtime: 1h}}\n",
     "profiles.yaml:2: app 'desktop': not a usable app name"),
    ("apps:\n  code:\n    command: ['x {unix_socket}']\n    url: vscode\n"
     "profiles:\n  - {name: a, resources: {memory: 1GiB, runtime: 1h}}\n",
     "profiles.yaml:4: app 'code': field 'url': 'vscode' must be a path"),
])
def test_app_settings_are_checked_with_file_and_line(text: str, words: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profiles(text)
    assert words.replace("Value error, ", "") in str(info.value)


def test_site_apps_on_a_tcp_port_are_refused_saying_why_and_what_to_write() -> None:
    """jupyter-server-proxy would hand the user's requests, cookie included, to whatever
    answers on the node's TCP port: anyone on the node can take it first or beside it."""
    text = ("apps:\n  rstudio:\n    command: [rserver, '--www-port={port}']\n"
            "profiles:\n  - {name: a, app: rstudio, resources: {memory: 1GiB, runtime: 1h}}\n")
    with pytest.raises(ProfileError) as info:
        parse_profiles(text)
    said = str(info.value)
    assert "profiles.yaml:3: app 'rstudio': field 'command': {port} is refused" in said
    assert "login cookie" in said and "{unix_socket}" in said and "--www-socket" in said
    ok = parse_profiles(text.replace("--www-port={port}", "--www-socket={unix_socket}"))
    assert ok.apps["rstudio"].command == ["rserver", "--www-socket={unix_socket}"]
