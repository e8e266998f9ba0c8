"""Demo hub: local one-node SLURM, the example profiles, demo users alice, bob, carol.

Started by scripts/demo. Not a production config: the shared-password authenticator lets the
demo users in with one shared password. A real site keeps its own authenticator (PAM, LDAP, OAuth).
"""

import os
from pathlib import Path

import hpcspawner

here = Path(__file__).resolve().parent
c = get_config()  # noqa: F821  (provided by JupyterHub)

c.JupyterHub.spawner_class = "hpcspawner"
# scripts/demo hands over its copy; without it (`hpcspawner render --config`): the example's
c.HPCSpawner.profiles_path = os.environ.get("HPCSPAWNER_PROFILES",
                                            str(here.parent / "profiles.yaml"))
c.HPCSpawner.walltime_warning = 10 * 60  # users are warned ten minutes before the time limit
c.Spawner.default_url = "/lab"
c.JupyterHub.allow_named_servers = True  # e.g. a notebook and a remote desktop at once
c.JupyterHub.template_paths = [hpcspawner.hub_templates()]  # each server's profile on /hub/home

c.JupyterHub.bind_url = os.environ.get("HPCSPAWNER_DEMO_URL", "http://127.0.0.1:8000")
c.JupyterHub.hub_port = int(os.environ.get("HPCSPAWNER_DEMO_HUB_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = os.environ.get("HPCSPAWNER_DEMO_PROXY_API",
                                                 "http://127.0.0.1:8001")
state = Path(os.environ.get("HPCSPAWNER_DEMO_STATE", "/var/lib/hpcspawner-demo"))
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")

c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ.get(
    "HPCSPAWNER_DEMO_PASSWORD", "hpcspawner-demo")
c.Authenticator.allowed_users = {"alice", "bob", "carol"}
c.JupyterHub.cleanup_servers = False  # batch jobs outlive a hub restart

# carol operates the hub (docs/sessions.md): every user's sessions and the use by profile at
# /hub/hpcspawner/sessions, and the metrics at /hub/metrics. alice and bob see their own only.
c.JupyterHub.load_roles = [{
    "name": "operators",
    "description": "See and stop every user's batch sessions; read the metrics",
    "scopes": ["admin:servers", "read:users", "read:metrics"],
    "users": ["carol"],
}]
# scripts/demo --monitoring: Debian's Prometheus scrapes /hub/metrics with this token
_prometheus_token = state / "prometheus.token"
if _prometheus_token.exists():
    c.JupyterHub.services = [{"name": "prometheus",
                              "api_token": _prometheus_token.read_text().strip()}]
    c.JupyterHub.load_roles.append({"name": "prometheus", "scopes": ["read:metrics"],
                                    "services": ["prometheus"]})
