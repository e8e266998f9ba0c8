"""A test stand-in for the HTCondor command-line tools (not HTCondor).

See ../README.md: what it reproduces byte for byte, and what it simplifies.
"""
