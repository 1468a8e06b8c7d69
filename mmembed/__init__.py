"""mmembed: multimodal embeddings with one shared, fused token embedding layer."""

from mmembed.embedding import SharedEmbedding

__all__ = ["SharedEmbedding", "load"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # mmembed.load: imported on first use, so `import mmembed` stays as light as the layer
    if name == "load":
        from mmembed.inference import load

        return load
    raise AttributeError(f"module 'mmembed' has no attribute {name!r}")
