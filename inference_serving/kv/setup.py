"""Builds each instance's KV manager from the run options: plain, vLLM prefix caching or the
existing simulator's page-tree accounting, with its second-tier store and swap space."""

from __future__ import annotations

from inference_serving.cluster_config import ClusterConfig, InstanceSpec, NodeSpec
from inference_serving.kv.manager import KVCacheManager
from inference_serving.kv.prefix import CHUNK_TOKENS, PrefixCachingManager
from inference_serving.kv.radix import RadixPrefixManager
from inference_serving.kv.swap import SwapSpace
from inference_serving.kv.tier import PrefixTier
from inference_serving.memory_model import KvBudget
from inference_serving.options import RunOptions
from llmsim_core.errors import InputError
from llmsim_core.iteration_plan import HOST, cxl_device, cxl_target

LEGACY_SHARED_CPU_PAGE = 256  # the existing simulator's shared CPU pool page


def swap_space(cluster: ClusterConfig, node: NodeSpec, evict_loc: str = "cpu",
               host_weights: int = 0) -> SwapSpace:
    """Swap space on `evict_loc`: `cpu` (the node's CPU memory, less `host_weights` bytes of
    weights placed there) or `cxl:<k>` (device k of the CXL pool, an equal share of the pool's
    capacity)."""
    if evict_loc == "cpu":
        return SwapSpace(node.cpu_mem.size_bytes - host_weights)
    device = cxl_device(evict_loc)
    pool = cluster.cxl_mem
    if device is None or pool is None or not 0 <= device < pool.num_devices:
        raise InputError(f"KV eviction target '{evict_loc}' does not exist", cluster.path,
                         "use cpu or cxl:<k> with k below cxl_mem.num_devices")
    return SwapSpace(pool.memory.size_bytes // pool.num_devices, cxl_target(device), device)


class KvSetup:
    """Makes the instances' managers; shared second-tier stores are made once."""

    def __init__(self, cluster: ClusterConfig, options: RunOptions) -> None:
        self.cluster = cluster
        self.options = options
        self.radix = options.scheduler == "legacy" or options.compat.radix_prefix_cache
        self.tiers: dict[tuple, PrefixTier] = {}
        if options.prefix_storage == "CXL" and cluster.cxl_mem is None:
            raise InputError("--prefix-storage CXL needs a CXL pool", cluster.path,
                             "add a top-level cxl_mem object or use --prefix-storage CPU")

    def tier(self, node: NodeSpec, spec: InstanceSpec) -> PrefixTier | None:
        """The second-tier store `spec` uses, if any."""
        storage, shared = self.options.prefix_storage, self.options.prefix_sharing
        if storage is None:
            return None
        page = CHUNK_TOKENS
        if self.radix and not (shared and storage == "CPU"):
            page = spec.block_size or self.options.block_size  # token pages, at block grain
        elif self.radix:
            page = LEGACY_SHARED_CPU_PAGE
        if storage == "CPU":
            key = ("CPU", node.node_id) if shared else ("CPU", node.node_id, spec.instance_id)
            size = node.cpu_mem.size_bytes // (1 if shared else len(node.instances))
            target, index = HOST, node.node_id
        else:
            pool = self.cluster.cxl_mem
            count = len(self.cluster.instances)
            key = ("CXL",) if shared else ("CXL", spec.instance_id)
            size = pool.memory.size_bytes // (1 if shared else count)
            index = 0 if shared else spec.instance_id % pool.num_devices
            target = cxl_target(index)
        if key not in self.tiers:
            self.tiers[key] = PrefixTier(storage, target, index, size, page, shared)
        return self.tiers[key]

    def manager(self, node: NodeSpec, spec: InstanceSpec, budget: KvBudget, block_size: int,
                bytes_per_token: int, evict_loc: str = "cpu",
                host_weights: int = 0) -> KVCacheManager:
        """The KV manager of one instance; preempted KV is swapped to `evict_loc`
        (`host_weights`: bytes of this instance's weights placed in its node's CPU memory)."""
        swap = swap_space(self.cluster, node, evict_loc, host_weights)
        if not self.options.prefix_caching:
            return KVCacheManager(budget.num_blocks, block_size, swap, budget.block_bytes,
                                  spec.npu_num)
        cls = RadixPrefixManager if self.radix else PrefixCachingManager
        return cls(budget.num_blocks, block_size, bytes_per_token, swap, budget.block_bytes,
                   spec.npu_num, self.tier(node, spec))
