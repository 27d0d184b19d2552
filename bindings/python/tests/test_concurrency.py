"""One engine shared: threads share its key cache (counted at the wire), the async API runs
inside a running event loop without blocking it."""

import asyncio
import threading

import oneseal


def one(i):
    return {"messages": [{"channel": "whatsapp", "to": "2799900001", "content": f"code {i}"}]}


def test_eight_threads_of_1000_messages_cost_at_most_nine_data_keys(moto, kms_key):
    eng = oneseal.Engine(kms_key_id=kms_key, endpoint_url=moto["proxy"])
    before = moto["counts"].get("GenerateDataKey", 0)
    errors = []

    def work(t):
        try:
            for i in range(1000):
                out = eng.encrypt(one(t * 1000 + i))
                assert out["messages"][0]["encryptionKey"]
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    made = moto["counts"].get("GenerateDataKey", 0) - before
    assert 1 <= made <= 9, made


def test_500_async_calls_under_gather_round_trip(local_key):
    eng = oneseal.Engine(local_key=local_key)

    async def main():
        sealed = await asyncio.gather(*(eng.encrypt_async(one(i)) for i in range(500)))
        plain = await asyncio.gather(*(eng.decrypt_async(s) for s in sealed))
        return plain

    plain = asyncio.run(main())
    assert [p["messages"][0]["content"] for p in plain] == [f"code {i}" for i in range(500)]


def test_the_event_loop_keeps_running_during_async_calls(local_key):
    eng = oneseal.Engine(local_key=local_key)
    big = {"messages": [one(i)["messages"][0] for i in range(5000)]}

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.ensure_future(ticker())
        for _ in range(5):
            await eng.encrypt_async(big)
        t.cancel()
        return ticks

    assert asyncio.run(main()) > 100
