"""Import path of the plain KV-cache manager (the package `inference_serving.kv` holds it)."""

from inference_serving.kv.manager import KVCacheManager

__all__ = ["KVCacheManager"]
