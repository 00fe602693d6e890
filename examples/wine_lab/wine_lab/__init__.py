"""A lab's own code, trained by explab: a data module and a backbone, found through ``_target_`` paths."""
