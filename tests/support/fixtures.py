"""Real-peer pytest fixtures built on `stack/` (filled in by the stack work)."""
