"""Where the device comes from: jmp shell, an exporter config, a standalone exporter, a controller lease."""
