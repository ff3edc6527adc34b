#!/usr/bin/env python
"""Entry point: ``python cli.py --help``. The commands live in ``minialex/tools/cli.py``; the installed
``minialex`` console script runs the same click group."""

import os

# Under mpiexec the processes of a node share its cores: unless the user chose a thread count,
# give each process its share of BLAS threads, before NumPy loads OpenBLAS (docs/distributed.md).
_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_LOCAL = os.environ.get("MPI_LOCALNRANKS") or os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
if _LOCAL and int(_LOCAL) > 1 and not any(v in os.environ for v in _THREADS):
    for _v in _THREADS:
        os.environ[_v] = str(max(1, (os.cpu_count() or 1) // int(_LOCAL)))

from minialex.tools.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
