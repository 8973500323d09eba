"""Configuration: the option table, resolved settings, the jmp_mount marker, exporter config files."""
