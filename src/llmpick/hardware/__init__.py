"""Hardware: a sourced table of accelerators and detection of this machine.

from llmpick.hardware import get_device, detect_local
get_device("rtx4090").memory_bandwidth_gb_s   # 1008.0, from NVIDIA's spec
detect_local()                                 # first GPU, else the CPU (measured)
"""

from llmpick.hardware.detect import detect_cpu, detect_gpus, detect_host, detect_local
from llmpick.hardware.devices import Device, HostInfo, list_devices
from llmpick.hardware.resolve import get_device

__all__ = [
    "Device",
    "HostInfo",
    "detect_cpu",
    "detect_gpus",
    "detect_host",
    "detect_local",
    "get_device",
    "list_devices",
]
