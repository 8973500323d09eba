"""Run state on disk and its guarantees: the run directory store, mountpoints, the restore journal, stale sweeps."""
