"""SLURM: a study as a worker array, DDP jobs, and the tracking server for a cluster."""
