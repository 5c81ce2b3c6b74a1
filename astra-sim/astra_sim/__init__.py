"""ASTRA-Sim-compatible analytical engine: network, collectives, Chakra traces."""

from astra_sim.collectives import KINDS, collective_ns, send_ns
from astra_sim.system import SystemConfig
from astra_sim.topology import Dimension

__all__ = ["KINDS", "Dimension", "SystemConfig", "collective_ns", "send_ns"]
