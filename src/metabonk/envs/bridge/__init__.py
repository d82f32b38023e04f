"""The real-game bridge: a versioned TCP protocol (docs/bridge.md), the client env, the reference server."""

from metabonk.envs.bridge.client import BridgeConnection, BridgeVectorEnv
from metabonk.envs.bridge.protocol import PROTOCOL_NAME, PROTOCOL_VERSION, BridgeError, ProtocolError
from metabonk.envs.bridge.server import BridgeServer

__all__ = [
    "PROTOCOL_NAME",
    "PROTOCOL_VERSION",
    "BridgeConnection",
    "BridgeError",
    "BridgeServer",
    "BridgeVectorEnv",
    "ProtocolError",
]
