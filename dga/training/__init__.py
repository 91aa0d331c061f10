"""Training: one fit loop, DDP and threads, checkpoints, fine-tuning, provenance, the trained network as a bundle."""
