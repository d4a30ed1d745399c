"""The commands and the dataflow behind them.

A process runs its dataflow's workers itself and gets its parallelism from more workers and
processes, so numerical libraries keep to the calling thread: an OpenBLAS thread pool
(loaded with scikit-learn, for delay clusters) spins on a core the workers need. Set before
numpy or scipy is loaded; a value in the environment wins.
"""

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
