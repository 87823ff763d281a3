"""A faithful local simulator of the CTGT chat completions API, for tests, examples and demos.

`Simulator` is an ASGI app that answers like the real service (auth, validation, replies,
streams, errors) and injects faults on demand. Run it in process with `SimulatorTransport`,
or on a loopback socket with `Simulator.serve()`:

    sim = Simulator()
    async with httpx.AsyncClient(
        transport=SimulatorTransport(sim), base_url="http://sim/v1"
    ) as client:
        response = await client.post("/chat/completions", json=..., headers=...)
"""

from __future__ import annotations

from ._faults import (
    SIMULATE_HEADER,
    DropConnection,
    ErrorEvent,
    Fault,
    MalformedChunk,
    Stall,
    StatusFault,
    StreamFault,
)
from ._recording import RecordedRequest
from ._simulator import Simulator
from ._transport import SimulatorTransport

__all__ = [
    "DropConnection",
    "ErrorEvent",
    "Fault",
    "MalformedChunk",
    "RecordedRequest",
    "SIMULATE_HEADER",
    "Simulator",
    "SimulatorTransport",
    "Stall",
    "StatusFault",
    "StreamFault",
]

# Show the public path in reprs, tracebacks and docs, as httpx does.
for _name in __all__:
    _member = globals()[_name]
    if isinstance(_member, type):
        _member.__module__ = __name__
del _name, _member
