"""Execution engines for extraction beyond the local DataLoader (optional extras)."""
