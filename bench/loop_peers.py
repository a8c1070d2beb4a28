#!/usr/bin/python3
"""Python twins of loopkernel's loop workloads (bench/loop.go), measured on
asyncio's default loop and, when it can be imported, on uvloop.

Each workload runs n operations inside one run of a fresh loop and times only
that run; n grows (as Go's testing.Benchmark grows b.N) until one run takes at
least --min-time seconds. Every workload checks that all n operations really
happened. The result is JSON on stdout:

  {"python": "3.11.2", "uvloop": "0.17.0" | null,
   "results": {"asyncio": {"call_soon": {"ns_per_op": 95.1, "cpu_ns_per_op": 94.0,
                                         "n": 4000000, "runs_ns_per_op": [...]},
                           ...},
               "uvloop": {...}}}

ns_per_op (wall clock) and cpu_ns_per_op (process CPU time, which a busy
neighbour on a shared machine disturbs less) are medians of --repeat measured
runs.
"""

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time

CALL_SOON_BATCH = 1000  # bench.CallSoonBatch
TIMER_BATCH = 1000  # bench.TimerBatch
TIMER_STEP = 10e-9  # bench.TimerStep, in seconds


def timer_delays():
    """The delays of one timer batch, in the same scrambled order as Go's
    timerDelays (same LCG, same Fisher-Yates)."""
    d = [i * TIMER_STEP for i in range(TIMER_BATCH)]
    x = 12345
    for i in range(len(d) - 1, 0, -1):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        j = (x >> 16) % (i + 1)
        d[i], d[j] = d[j], d[i]
    return d


def call_soon(loop, n):
    """A driver callback schedules CALL_SOON_BATCH counting callbacks, then
    itself, until n are scheduled; the loop stops after the last."""
    ran = 0
    left = n

    def count():
        nonlocal ran
        ran += 1

    def driver():
        nonlocal left
        k = min(CALL_SOON_BATCH, left)
        left -= k
        cs = loop.call_soon
        for _ in range(k):
            cs(count)
        cs(driver if left > 0 else loop.stop)

    loop.call_soon(driver)
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    loop.run_forever()
    dt, dc = time.perf_counter_ns() - t0, time.process_time_ns() - c0
    assert ran == n, (ran, n)
    return dt, dc


def timer(loop, n):
    """Batches of TIMER_BATCH call_later timers with spread delays; the last
    to fire schedules the next batch."""
    delays = timer_delays()
    fired = 0
    left = n
    want = 0

    def fire():
        nonlocal fired
        fired += 1
        if fired < want:
            return
        if left > 0:
            schedule()
        else:
            loop.stop()

    def schedule():
        nonlocal left, want
        k = min(TIMER_BATCH, left)
        left -= k
        want += k
        cl = loop.call_later
        for i in range(k):
            cl(delays[i], fire)

    loop.call_soon(schedule)
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    loop.run_forever()
    dt, dc = time.perf_counter_ns() - t0, time.process_time_ns() - c0
    assert fired == n, (fired, n)
    return dt, dc


def task_await(loop, n):
    """A task creates a future, schedules a callback that resolves it, and
    awaits it, n times."""
    done = 0

    async def body():
        nonlocal done
        for _ in range(n):
            f = loop.create_future()
            loop.call_soon(f.set_result, None)
            await f
            done += 1

    task = loop.create_task(body())
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    loop.run_until_complete(task)
    dt, dc = time.perf_counter_ns() - t0, time.process_time_ns() - c0
    assert done == n, (done, n)
    return dt, dc


def task_yield(loop, n):
    """A task awaits asyncio.sleep(0) n times."""
    done = 0

    async def body():
        nonlocal done
        for _ in range(n):
            await asyncio.sleep(0)
            done += 1

    task = loop.create_task(body())
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    loop.run_until_complete(task)
    dt, dc = time.perf_counter_ns() - t0, time.process_time_ns() - c0
    assert done == n, (done, n)
    return dt, dc


GATHER_TASKS = 1000  # bench.GatherTasks
QUEUE_SIZE = 64  # bench.QueueSize
LOCK_TASKS = 10  # bench.LockTasks


def run_main(loop, body):
    """Run body() as the main task, timing only the run."""
    task = loop.create_task(body())
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    loop.run_until_complete(task)
    return time.perf_counter_ns() - t0, time.process_time_ns() - c0


def gather(loop, n):
    """n times: gather 1000 coroutines (each wrapped in a task) that return
    their index."""
    total = 0

    async def child(i):
        return i

    async def body():
        nonlocal total
        for _ in range(n):
            vals = await asyncio.gather(*[child(i) for i in range(GATHER_TASKS)])
            total += vals[-1]

    dt, dc = run_main(loop, body)
    assert total == n * (GATHER_TASKS - 1), (total, n)
    return dt, dc


def queue(loop, n):
    """n items through asyncio.Queue(64) from a producer task to the main
    task."""
    got = 0

    async def body():
        nonlocal got
        q = asyncio.Queue(QUEUE_SIZE)

        async def producer():
            for i in range(n):
                await q.put(i)

        prod = asyncio.ensure_future(producer())
        for i in range(n):
            v = await q.get()
            assert v == i
            got += 1
        await prod

    dt, dc = run_main(loop, body)
    assert got == n, (got, n)
    return dt, dc


def lock(loop, n):
    """n acquisitions of one asyncio.Lock by 10 tasks, each holding it
    across await asyncio.sleep(0)."""
    done = 0

    async def body():
        lk = asyncio.Lock()

        async def worker(share):
            nonlocal done
            for _ in range(share):
                async with lk:
                    await asyncio.sleep(0)
                done += 1

        shares = [n // LOCK_TASKS + (1 if w < n % LOCK_TASKS else 0) for w in range(LOCK_TASKS)]
        await asyncio.gather(*[worker(s) for s in shares])

    dt, dc = run_main(loop, body)
    assert done == n, (done, n)
    return dt, dc


def wait_for(loop, n):
    """task_await with the await under asyncio.wait_for(f, 10)."""
    done = 0

    async def body():
        nonlocal done
        for _ in range(n):
            f = loop.create_future()
            loop.call_soon(f.set_result, None)
            await asyncio.wait_for(f, 10)
            done += 1

    dt, dc = run_main(loop, body)
    assert done == n, (done, n)
    return dt, dc


WORKLOADS = {
    "call_soon": call_soon,
    "timer": timer,
    "task_await": task_await,
    "task_yield": task_yield,
    "gather": gather,
    "queue": queue,
    "lock": lock,
    "wait_for": wait_for,
}


def measure_once(new_loop, work, n):
    loop = new_loop()
    try:
        return work(loop, n)
    finally:
        loop.close()


def measure(new_loop, work, min_time, repeat):
    """Grow n until one run lasts min_time, then take the median of repeat
    runs at that n (the growth runs double as warm-up)."""
    n = 1  # grows fast; a gather op alone is milliseconds
    while True:
        dt, dc = measure_once(new_loop, work, n)
        if dt >= min_time * 1e9:
            break
        # Aim 20% past min_time, growing at most 100x per step.
        target = int(n * min_time * 1.2e9 / max(dt, 1))
        n = max(n + 1, min(target, 100 * n))
    runs = [(dt, dc)] + [measure_once(new_loop, work, n) for _ in range(repeat - 1)]
    return {
        "ns_per_op": statistics.median(r[0] / n for r in runs),
        "cpu_ns_per_op": statistics.median(r[1] / n for r in runs),
        "n": n,
        "runs_ns_per_op": [r[0] / n for r in runs],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loops", default="asyncio,uvloop",
                    help="comma-separated: asyncio, uvloop (skipped if not importable)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma-separated workload names")
    ap.add_argument("--min-time", type=float, default=0.5,
                    help="seconds one measured run must last")
    ap.add_argument("--repeat", type=int, default=3,
                    help="measured runs per workload; the median is reported")
    args = ap.parse_args()

    try:
        import uvloop
        uv_version = uvloop.__version__
    except ImportError:
        uvloop = None
        uv_version = None

    factories = {}
    for name in args.loops.split(","):
        name = name.strip()
        if name == "asyncio":
            # The default loop on Linux: the selector loop over epoll.
            factories[name] = asyncio.new_event_loop
        elif name == "uvloop":
            if uvloop is not None:
                factories[name] = uvloop.new_event_loop
        elif name:
            ap.error(f"unknown loop {name!r}")

    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in names:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r} (known: {', '.join(WORKLOADS)})")

    results = {}
    for loop_name, new_loop in factories.items():
        results[loop_name] = {}
        for w in names:
            gc.collect()
            results[loop_name][w] = measure(new_loop, WORKLOADS[w], args.min_time, args.repeat)

    json.dump({
        "python": sys.version.split()[0],
        "uvloop": uv_version,
        "results": results,
    }, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
