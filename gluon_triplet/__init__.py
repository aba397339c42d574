"""gluon-triplet: learn embeddings with triplet loss in MXNet Gluon."""

__version__ = "0.1.0"
