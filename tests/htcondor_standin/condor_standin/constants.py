"""Fixed values the stand-in advertises (taken from the HTCondor 25.14 reference transcripts)."""

from __future__ import annotations

import os

ARCH = "X86_64"
OPSYS = "LINUX"
CONDOR_VERSION = "$CondorVersion: 25.14.0 2026-11-22 PRE-RELEASE-UWCS $"
CONDOR_PLATFORM = "$CondorPlatform: X86_64-Debian_12 $"
DEFAULT_REQUEST_DISK = "MAX({1024, (TransferInputSizeMB+1) * 1.25}) * 1024"
AUTO_CLUSTER_ATTRS = ("CatalogID,catalogs,CatalogSize,RequestCpus,RequestDisk,RequestedCatalogIDs,"
                      "RequestedCatalogs,RequestGPUs,RequestMemory,ConcurrencyLimits,FlockTo,Rank,"
                      "Requirements,FileSystemDomain,TransferInputSizeMB")

# The stand-in has no network daemons; these ports only appear in "sinful strings".
SCHEDD_PORT = 9619
STARTD_PORT = 9620
COLLECTOR_PORT = 9618

DEFAULT_SOCKET = "/run/hpcspawner-condor-standin/schedd.sock"
DEFAULT_STATE_DIR = "/var/lib/hpcspawner-condor-standin"
SOCKET_ENV = "CONDOR_STANDIN_SOCKET"


def socket_path() -> str:
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def sinful(host: str, port: int) -> str:
    return f"<127.0.0.1:{port}?addrs=127.0.0.1-{port}&alias={host}>"
