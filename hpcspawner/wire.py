"""What crosses between the hub and the job, defined once and imported by both sides (the
launcher inside the job, the spawner, the report route, the backends, the helper). Standard
library only, cheap to import: the launcher loads it before the server starts."""

from __future__ import annotations

# -- the tag on every job (SLURM comment, HTCondor attribute): which hub, user and server ----
TAG_ROOT = "hpcspawner:"  # what every tag starts with
MAX_TAG = 512  # a tag is shorter (hub id <= 128, user <= 64, server name <= 255 characters)

# -- the job directory in the user's home: logs and the token hand-off files -----------------
JOB_DIR_NAME = ".hpcspawner"  # hpcspawner-helper creates and writes no other directory

# -- the launcher's report: POST to the hub's API URL + REPORT_PATH ----------------------------
REPORT_PATH = "/hpcspawner/report"


def job_tag(hub_id: str, username: str, server_name: str) -> str:
    """The tag on every job: ``hpcspawner:HUB:USER:SERVER``."""
    return f"{TAG_ROOT}{hub_id}:{username}:{server_name}"


def tag_user(tag: str) -> str:
    """The user a tag names (``hpcspawner:HUB:USER:SERVER``); '' if it is not one."""
    parts = tag.split(":", 3)
    return parts[2] if len(parts) == 4 and f"{parts[0]}:" == TAG_ROOT else ""
