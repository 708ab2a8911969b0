"""What CI systems are handed: the build plan, and workflows derived from it."""
