"""Scale-out: sweep expansion and executors (local now; slurm/ray/htcondor plug in by name)."""
