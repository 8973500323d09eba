"""What every layer uses: defaults, errors, process liveness, owned temp folders."""
