"""Hydra's basic sweeper, with every job's config checked before the first job runs."""
