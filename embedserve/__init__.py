"""Code shared by the API and the workers: settings, errors, Redis keys, the wire protocol.

Nothing in this package may import torch, transformers or Flask: both sides import it.
"""
