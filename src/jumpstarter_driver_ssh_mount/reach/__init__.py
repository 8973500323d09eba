"""Reaching the device: routes (direct, relay, port forward), the transport rule, trust, device commands."""
