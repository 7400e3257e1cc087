"""nfbench: neural frames of vision models, layer by layer (Kvinge et al., arXiv 2211.10558)."""

__version__ = "0.1.0"
