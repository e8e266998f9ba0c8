#!/usr/bin/python3
"""Entry point of the HTCondor stand-in daemon (see README.md).  Run as root."""

import os
import sys

sys.dont_write_bytecode = True

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from condor_standin.daemon import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
