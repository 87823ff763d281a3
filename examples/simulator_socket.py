"""The simulator on a real loopback socket, for any HTTP client.

Simulator.serve() needs asyncio and uvicorn (pip install
"ctgt-async[server]"). `ctgt serve` does the same from a shell.
"""

import anyio
import httpx

from ctgt_async import AsyncCTGT
from ctgt_async.testing import Simulator


async def main() -> None:
    simulator = Simulator(api_keys=["sk-local"])
    async with simulator.serve() as base_url:  # a free port on 127.0.0.1
        print(f"serving on {base_url}")

        async with AsyncCTGT(api_key="sk-local", base_url=base_url) as client:
            completion = await client.chat.completions.create(
                model="gemini-2.5-flash-lite",
                messages=[{"role": "user", "content": "Hello over TCP"}],
            )
            print(f"ctgt-async: {completion.choices[0].message.content}")

        # Any HTTP client can ask for a fault with the X-CTGT-Simulate
        # header.
        headers = {
            "Authorization": "Bearer sk-local",
            "X-CTGT-Simulate": "status=503",
        }
        body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
        async with httpx.AsyncClient(base_url=base_url) as http:
            response = await http.post(
                "/chat/completions",
                headers=headers,
                json=body,
            )
        code = response.json()["error"]["code"]
        print(f"plain httpx: {response.status_code} {code}")

    print(f"the simulator saw {len(simulator.requests)} requests")


anyio.run(main)
