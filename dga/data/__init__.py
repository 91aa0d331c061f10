"""Data stage: FASTA + GFF3 -> genome store -> training windows."""
