"""galleria: a static site generator for neural-network activation galleries."""

__version__ = "0.1.0"
