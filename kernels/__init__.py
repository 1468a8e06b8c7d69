"""Triton kernels of mmembed, one module per op (``embed_project.py``: the fused embedding
lookup + projection). Installed as ``mmembed.kernels`` (``mmembed/kernels`` links here); each
op's registration, autograd, torch reference, cost model and ONNX lowering live beside each
other in ``mmembed/ops/<op>/``."""
