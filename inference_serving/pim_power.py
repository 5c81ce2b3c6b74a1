"""What the power model (serving.md §11) reads of PIM attention offload (serving.md §10)."""

from __future__ import annotations

from collections.abc import Mapping

from inference_serving.cluster_config import GIB
from inference_serving.iteration_cost import Usage
from inference_serving.pim_device import PimDevice
from inference_serving.power import PimPower


def pim_power(device: PimDevice) -> PimPower:
    """A node's PIM channels as the power model sees them: idle and peak power (W) and
    capacity (GB) of one channel, which replace the DRAM block's DIMM idle power and size."""
    return PimPower(device.idle_power_w, device.peak_power_w, device.channel_bytes / GIB)


def pim_busy(usage: Usage) -> Mapping[int, int]:
    """PIM channel busy time (channel-ns) per node of one iteration."""
    return usage.pim_busy_ns
