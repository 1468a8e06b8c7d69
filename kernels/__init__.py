"""Triton kernels of mmembed, installed as ``mmembed.kernels``."""
