"""What the plugin shows: terminal output, warnings, failure artifacts, what the device did."""
