# Read by the user's Jupyter server inside an hpcspawner job: the launcher puts this directory
# first on JUPYTER_CONFIG_PATH when the profile's app needs jupyter-server-proxy. The app comes
# as JSON in the variable wire.Env.SERVER_PROXY names (public: no secret in it; docs/apps.md).
import json
import os

from hpcspawner.wire import Env

_servers = os.environ.get(Env.SERVER_PROXY)
if _servers:
    c.ServerProxy.servers = json.loads(_servers)  # type: ignore[name-defined]  # noqa: F821
