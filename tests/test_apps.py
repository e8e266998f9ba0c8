from __future__ import annotations

import pytest

from hpcspawner.apps import app_command


def test_the_sites_absolute_cmd_is_what_the_job_runs() -> None:
    cmd = app_command("notebook", ["/opt/jupyter/bin/jupyterhub-singleuser"], ["--debug"],
                      "/opt/hpcspawner/venv/bin/python3")
    assert cmd == ["/opt/jupyter/bin/jupyterhub-singleuser", "--debug"]


def test_a_bare_name_is_taken_from_beside_the_jobs_python() -> None:
    # sudo's secure_path would not find it: "command not found" in the job (batchspawner)
    cmd = app_command("notebook", ["jupyterhub-singleuser"], [], "/opt/venv/bin/python3")
    assert cmd == ["/opt/venv/bin/jupyterhub-singleuser"]


def test_unknown_app_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown app"):
        app_command("desktop-xyz", ["x"], [], "/usr/bin/python3")
