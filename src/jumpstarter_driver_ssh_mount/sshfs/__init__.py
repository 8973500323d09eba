"""The sshfs process: build its command line, start it, know when it is mounted, unmount it.

Nothing here knows Jumpstarter or device files.
"""
