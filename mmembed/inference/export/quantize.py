"""Int8 ONNX graphs (``runtime="onnx-int8"``): ONNX Runtime's dynamic quantisation of the
weight products, for CPU serving where speed is worth a small, measured change in outputs.

Every ``MatMul`` whose second input is a 2-D weight gets int8 weights (per output channel) and
activations quantised per run (``DynamicQuantizeMatMul``); products of two activations (the
attention scores) stay float. Weights whose names match a plan's ``float_patterns`` stay float
too: the speech front end's DFT basis and mel filterbank, because power spectra span more
decades than 8 bits hold (quantised, the default recogniser's test CER went from 20.1% to
74.7%). Not exact: docs/benchmarks.md gives the recogniser's CER and speed with it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnx


def weight_products(model: onnx.ModelProto, float_patterns: Sequence[str]) -> list[str]:
    """Names of the ``MatMul`` nodes to quantise: a 2-D initializer as their weight, whose
    name matches none of ``float_patterns`` (substrings)."""
    weights = {i.name: len(i.dims) for i in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul"
        and weights.get(node.input[1]) == 2
        and not any(pattern in node.input[1] for pattern in float_patterns)
    ]


def quantize_int8(data: bytes, float_patterns: Sequence[str]) -> bytes:
    """The ONNX model ``data`` with its weight products in int8 (see the module's docs)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load_from_string(data)
    nodes = weight_products(model, float_patterns)
    if not nodes:
        raise ValueError("no weight products to quantise in this graph")
    # the quantiser logs a pre-processing hint for every model at WARNING
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="mmembed-int8-") as folder:
            source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
            source.write_bytes(data)
            quantize_dynamic(
                source,
                target,
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=nodes,
            )
            return target.read_bytes()
    finally:
        logging.getLogger().setLevel(quiet)
