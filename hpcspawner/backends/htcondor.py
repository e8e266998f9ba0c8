"""HTCondor backend (issue 4)."""

from __future__ import annotations

from .base import Backend


class HTCondorBackend(Backend):
    name = "htcondor"
    template_name = "htcondor.sub.j2"
