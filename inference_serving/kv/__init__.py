"""The KV cache of an instance: block pool, prefix hashing, second-tier stores, swap space and
the managers the schedulers call (`get_computed_blocks`, `allocate_slots`, `free`,
`swap_out` / `swap_in`)."""

from inference_serving.kv.manager import NO_HIT, KVCacheManager, PrefixHit, PrefixStats
from inference_serving.kv.prefix import PrefixCachingManager
from inference_serving.kv.swap import SwapSpace
from inference_serving.kv.tier import PrefixTier

__all__ = ["NO_HIT", "KVCacheManager", "PrefixCachingManager", "PrefixHit", "PrefixStats",
           "PrefixTier", "SwapSpace"]
