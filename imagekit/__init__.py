"""imagekit: one catalog of notebook stacks -> tested container images for every consumer."""

__version__ = "0.1.0"
