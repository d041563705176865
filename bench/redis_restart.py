"""Alert replay after a Redis restart: N dashboards (default 200) connected to ONE uvicorn
process over real WebSockets, Redis (the channel layer) killed during an alert burst and
started again.

A private redis-server (never the machine's shared one) is the channel layer of the uvicorn
process and of this one. The dashboards behave as the product's (live.js, through the alerts
bench's client): when the server drops a socket they reconnect after 0.5 s (doubling up to
10 s) and send {"type": "resume", "after": last seq seen}. No periodic resync is sent, so what
arrives after the restart arrives by reconnect and resume alone.

1. Every dashboard connected; W alerts raised (pushed live, a sanity check).
2. Redis SIGKILLed; D alerts raised while it is down (the rows commit, the pushes are lost).
3. Redis started again; the clock starts. For each dashboard: restart -> the last of the
   alerts it had not yet seen arrives. Reported: p50/p95/max over the dashboards, any
   dashboard still missing one when the wait ends (60 s), frames received twice.
4. One more alert raised: restart -> every dashboard has it by its push (live again).

Run: .venv/bin/python bench/redis_restart.py [--json] [--sockets 200] [--down-alerts 5]
Needs: redis-server on PATH, PostgreSQL on 127.0.0.1:5432. The database
triage_bench_redis_restart is dropped and recreated. Benchmarks are not tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.alerts import (  # noqa: E402
    Dashboard,
    dashboards_connect,
    fanout_raise,
    fanout_studies,
    raise_fd_limit,
    session_cookie,
)
from bench.peers import PrivateRedis  # noqa: E402

DB_NAME = "triage_bench_redis_restart"
WAIT_SECONDS = 60.0


async def until(condition: Any, seconds: float) -> bool:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return bool(condition())


def seen(board: Dashboard) -> set[int]:
    return {seq for seq, state in board.by_seq if state == "open"}


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 - one linear run
    parser = harness.argument_parser(__doc__)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--warm-alerts", type=int, default=3)
    parser.add_argument("--down-alerts", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="keep the run's logs there")
    args = parser.parse_args(argv)
    if harness.tools_missing("redis_restart", ("redis-server", "psql")):
        return 2
    work = harness.work_dir(args.workdir, "bench-redis-restart-")
    redis = PrivateRedis(work)
    env = harness.stack_environment(work, 1.0, 0, DB_NAME)
    env["REDIS_URL"] = redis.url  # the private server is the channel layer
    os.environ.update(env)
    django_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="django")
    web: subprocess.Popen[bytes] | None = None
    try:
        fd = raise_fd_limit(args.sockets * 2 + 512)
        redis.start()
        harness.database_reset(DB_NAME, env)
        import django

        django.setup()
        cookie = django_pool.submit(session_cookie).result()
        total = args.warm_alerts + args.down_alerts + 1
        studies = django_pool.submit(fanout_studies, total).result()
        port = harness.free_port()
        web = harness.uvicorn_start({**os.environ, **env}, work / "uvicorn.log", port)
        url = f"ws://127.0.0.1:{port}/ws/alerts/"
        headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}

        async def run() -> dict[str, Any]:
            loop = asyncio.get_running_loop()

            def raise_one(study_id: int) -> Any:
                return loop.run_in_executor(django_pool, fanout_raise, study_id)

            harness.say(f"redis restart bench: connecting {args.sockets} dashboards")
            boards, errors, connect_s = await dashboards_connect(args.sockets, url, headers, 50)
            if errors:
                raise harness.BenchError(f"{len(errors)} dashboards did not connect: {errors[0]}")
            await asyncio.sleep(1.0)
            seqs: list[int] = []
            for study_id in studies[: args.warm_alerts]:
                seqs.append((await raise_one(study_id))[0])
            if not await until(lambda: all(set(seqs) <= seen(b) for b in boards), 30):
                raise harness.BenchError("the warm-up alerts did not reach every dashboard")

            harness.say("redis restart bench: Redis killed, alerts raised while it is down")
            redis.kill()
            killed = time.perf_counter()
            down = studies[args.warm_alerts : args.warm_alerts + args.down_alerts]
            for study_id in down:
                seqs.append((await raise_one(study_id))[0])
            down_s = time.perf_counter() - killed
            missing_before = {b.index: set(seqs) - seen(b) for b in boards}
            redis.start()
            restarted = time.perf_counter()
            harness.say("redis restart bench: Redis back; waiting for every dashboard")
            done_at: dict[int, float] = {}

            def replayed() -> bool:
                for board in boards:
                    if board.index not in done_at and set(seqs) <= seen(board):
                        latest = max(
                            (board.by_seq[(seq, "open")] for seq in missing_before[board.index]),
                            default=restarted,
                        )
                        done_at[board.index] = max(latest - restarted, 0.0)
                return len(done_at) == len(boards)

            await until(replayed, WAIT_SECONDS)
            replayed()
            reconnected = sum(1 for b in boards if b.connections > 1)
            first = time.perf_counter()
            seqs.append((await raise_one(studies[-1]))[0])
            live = await until(lambda: all(seqs[-1] in seen(b) for b in boards), 30)
            live_s = time.perf_counter() - first
            alert_frames = [sum(1 for (seq, state) in b.by_seq if state == "open") for b in boards]
            for board in boards:
                await board.close()
            return {
                "dashboards": len(boards),
                "connect_s": round(connect_s, 2),
                "alerts_warm": args.warm_alerts,
                "alerts_while_down": args.down_alerts,
                "redis_down_s": round(restarted - killed, 2),
                "raising_while_down_s": round(down_s, 2),
                "dashboards_reconnected": reconnected,
                "replay_s": harness.spread(
                    list(done_at.values()), ("n", "p50", "p95", "max"), digits=2
                ),  # fmt: skip
                "dashboards_missing_an_alert": len(boards) - len(done_at),
                "distinct_alerts_per_dashboard": sorted(set(alert_frames)),
                "next_alert_live_s": round(live_s, 2) if live else None,
            }

        result = asyncio.run(run())
        report = {"machine": harness.machine_info(), "fd_limit": fd, **result}
    finally:
        harness.stop_process(web)
        redis.kill()
        django_pool.shutdown(wait=False)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    replay = report["replay_s"]
    print(f"Redis restart during an alert burst: {report['dashboards']} dashboards on one "
          f"uvicorn process, {report['alerts_while_down']} alerts raised while Redis was down "
          f"({report['redis_down_s']} s)")  # fmt: skip
    print(f"  dashboards that reconnected: {report['dashboards_reconnected']}")
    print(f"  restart -> last missed alert on the dashboard: p50 {replay['p50']} s, p95 "
          f"{replay['p95']} s, max {replay['max']} s (n={replay['n']})")  # fmt: skip
    print(f"  dashboards still missing an alert after {WAIT_SECONDS:.0f} s: "
          f"{report['dashboards_missing_an_alert']}")  # fmt: skip
    print(f"  next alert pushed live to every dashboard in {report['next_alert_live_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
