"""What differs between the JupyterHub versions we support (5.x and 6.x)."""

from __future__ import annotations

from tornado import web

try:  # JupyterHub >= 6.0
    from jupyterhub.spawner import SpawnException
except ImportError:  # JupyterHub 5.x: the same contract, built on HTTPError

    class SpawnException(web.HTTPError):  # type: ignore[no-redef,unused-ignore]
        """A spawn refused or failed for a reason the user should read."""

        def __init__(self, message: str, *, reason: str, log_message: str = "",
                     message_html: str = "", status_code: int = 400) -> None:
            self.message = message
            self.reason = reason
            self.message_html = message_html
            self.status_code = status_code
            # JupyterHub 5 shows an HTTPError's log_message to the user: that is `message`
            super().__init__(status_code, message, reason=reason)


__all__ = ["SpawnException"]
