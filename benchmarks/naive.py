"""The naive reference: one page at a time, orjson, JSONL, no concurrency. What a quick script does.

Usage: python benchmarks/naive.py BASE_URL OUTPUT PAGE_SIZE (credentials from ORANGE_* variables)
Prints one JSON object: orders, seconds (from the first request to the last line written).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time

import aiohttp
import orjson


async def main(base_url: str, output: str, page_size: int) -> None:
    started = time.perf_counter()
    basic = base64.b64encode(
        f"{os.environ['ORANGE_CLIENT_ID']}:{os.environ['ORANGE_CLIENT_SECRET']}".encode()
    )
    async with aiohttp.ClientSession() as session:
        async with session.post(
            base_url + "/oauth/v3/token",
            data=b"grant_type=client_credentials",
            headers={
                "Authorization": "Basic " + basic.decode(),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        ) as resp:
            token = orjson.loads(await resp.read())["access_token"]
        headers = {"Authorization": f"Bearer {token}", "X-Api-Key": os.environ["ORANGE_API_KEY"]}
        offset = 0
        with open(output, "wb") as out:
            while True:
                params = {"offset": str(offset), "limit": str(page_size)}
                async with session.get(
                    base_url + "/ordering/b2b/v3/requests", params=params, headers=headers
                ) as r:
                    total = int(r.headers["X-Total-Count"])
                    items = orjson.loads(await r.read())
                for item in items:
                    out.write(orjson.dumps(item) + b"\n")
                offset += len(items)
                if not items or offset >= total:
                    break
    print(orjson.dumps({"orders": offset, "seconds": time.perf_counter() - started}).decode())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
