"""EdgeOps: a Kubernetes operator for the edge-AI lifecycle."""

__version__ = "0.1.0"
