"""Our own Spark cloud: the device server (TCP 5683), its device registry and the admin API."""

from sparkflash.cloud.registry import DeviceRegistry
from sparkflash.cloud.server import CloudServer, ServerThread

__all__ = ["CloudServer", "DeviceRegistry", "ServerThread"]
