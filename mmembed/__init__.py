"""mmembed: multimodal embeddings with one shared, fused token embedding layer."""

from mmembed.embedding import SharedEmbedding

__all__ = ["SharedEmbedding"]
__version__ = "0.1.0"
