"""Device files, whatever the backend: collect, snapshot and restore, wait for, device readings."""
