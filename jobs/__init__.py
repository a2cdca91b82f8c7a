"""IRMSIA Pipeline stages: collect, index, split, train, register, and the core they share."""

__version__ = "0.1.0"
