"""mmembed's registered torch ops, one folder each (kernel, autograd, reference, cost model and
ONNX lowering side by side). Importing this package registers them."""

from mmembed.ops import embed_project

__all__ = ["embed_project"]
