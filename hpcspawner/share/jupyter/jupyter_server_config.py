# Read by the user's Jupyter server inside an hpcspawner job: the launcher puts this directory
# first on JUPYTER_CONFIG_PATH. The jupyter-server-proxy app of a profile's app comes as JSON
# in the variable contract.Env.SERVER_PROXY names (public: no secret in it; docs/apps.md).
import json
import os

from hpcspawner.contract import Env

_config = globals().get("c")  # Jupyter's config object (none when imported as a module)
if _config is not None:
    # the job's end as the hub says now, for JupyterLab's warning (hpcspawner.server_extension)
    _config.ServerApp.jpserver_extensions.update({"hpcspawner.server_extension": True})
    _servers = os.environ.get(Env.SERVER_PROXY)
    if _servers:
        _config.ServerProxy.servers = json.loads(_servers)
