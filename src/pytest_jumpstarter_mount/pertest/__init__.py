"""What the plugin does around each test: restore what it changed, failure artifacts, what the device did."""
