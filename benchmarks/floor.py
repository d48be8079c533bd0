"""The floor probe: fetch every page with the same concurrency as the exporter and `orjson.loads` it, write
nothing. What a client can do at best on this machine; the exporter is measured against it.

Usage: python benchmarks/floor.py BASE_URL PAGE_SIZE CONCURRENCY (credentials from ORANGE_* variables)
Prints one JSON object: orders, pages, seconds (from the first request to the last answer).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time

import aiohttp
import orjson


async def main(base_url: str, page_size: int, concurrency: int) -> None:
    started = time.perf_counter()
    creds = f"{os.environ['ORANGE_CLIENT_ID']}:{os.environ['ORANGE_CLIENT_SECRET']}".encode()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(
            base_url + "/oauth/v3/token",
            data=b"grant_type=client_credentials",
            headers={
                "Authorization": "Basic " + base64.b64encode(creds).decode(),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        ) as resp:
            token = orjson.loads(await resp.read())["access_token"]
        headers = {"Authorization": f"Bearer {token}", "X-Api-Key": os.environ["ORANGE_API_KEY"]}
        url = base_url + "/ordering/b2b/v3/requests"

        async def page(offset: int) -> int:
            params = {"offset": str(offset), "limit": str(page_size)}
            async with session.get(url, params=params, headers=headers) as r:
                total = int(r.headers["X-Total-Count"])
                items = orjson.loads(await r.read())
            return total if offset == 0 else len(items)

        total = await page(0)
        offsets = iter(range(page_size, total, page_size))
        counted = min(page_size, total)

        async def worker() -> None:
            nonlocal counted
            for offset in offsets:
                got = await page(offset)  # awaited first: `counted += await ...` would read a stale sum
                counted += got

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    pages = -(-total // page_size)
    seconds = time.perf_counter() - started
    print(orjson.dumps({"orders": counted, "pages": pages, "seconds": seconds}).decode())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
