"""Every ssh the project starts: host-key policy, sealing, in-memory identity, remote commands and shells."""
