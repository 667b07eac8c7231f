"""The link to the robot controller (docs/protocol.md): the wire protocol, both sides of it, latest-only receiving."""
