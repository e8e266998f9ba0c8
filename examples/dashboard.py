"""hpcspawner's example dashboard: a Streamlit app that runs as a batch job, as its user.

The "Dashboard" profile in profiles.yaml points at this file (scripts/setup-machine copies it
to /opt/hpcspawner/examples/). It shows where it runs and lets the user play with a random
walk: replace it with the site's own dashboards (docs/apps.md).
"""

import getpass
import os
import socket

import numpy as np
import pandas as pd
import streamlit as st

st.set_page_config(page_title="hpcspawner dashboard", layout="wide")
st.title("Batch-job dashboard")

job = os.environ.get("SLURM_JOB_ID") or os.environ.get("_CONDOR_JOB_AD", "")
cores = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("OMP_NUM_THREADS", "?")
left, middle, right = st.columns(3)
left.metric("User", getpass.getuser())
middle.metric("Node", socket.gethostname())
right.metric("Job", os.environ.get("SLURM_JOB_ID", "HTCondor" if job else "none"))
st.caption(f"{cores} core(s) granted to this job; it ends when you stop the server on the "
           "hub's home page or when its runtime is over.")

steps = st.slider("Steps of the random walk", min_value=10, max_value=5000, value=500)
seed = st.number_input("Seed", min_value=0, value=42, step=1)
walk = np.random.default_rng(int(seed)).standard_normal((int(steps), 3)).cumsum(axis=0)
st.line_chart(pd.DataFrame(walk, columns=["a", "b", "c"]))
