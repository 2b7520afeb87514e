#!/usr/bin/env python3
"""HTTP plaintext benchmark: corio and its peers side by side, under wrk.

For every server and mode (plain keep-alive, pipelined), in interleaved rounds, starts the
server pinned to one core, warms it up, runs wrk pinned to the other core with one thread,
and reads the server's CPU time (utime+stime from /proc) over the measured run. The primary
figure is server CPU microseconds per request; requests/s is reported next to it, with a
"client-bound" flag when wrk used more than 85% of its core (then req/s measures wrk).

  run_http_bench.py --server corio='build/examples/http_hello --port {port}' \\
                    --server asio='build/bench/peers/peer_asio_http --port {port}' --ref corio

or, naming the binaries (a corio built with -DCORIO_BACKEND=io_uring shows as corio-io_uring):

  run_http_bench.py --corio build-rel/examples/http_hello \\
                    --corio-io-uring build-rel-uring/examples/http_hello \\
                    --asio build-rel/bench/peers/peer_asio_http --ref asio

Server CPU is also split into user and kernel (sys) time per request: the kernel part is the
TCP stack and the syscalls, which both servers share, so a user-space difference shows there.
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """(user, sys) CPU seconds of the process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS  # utime, stime


def wait_listening(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def run_wrk(port, conns, seconds, depth, core):
    cmd = ["taskset", "-c", str(core), "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if depth > 1:
        cmd += ["-s", os.path.join(HERE, "pipeline.lua")]
    cmd.append(f"http://127.0.0.1:{port}/plaintext")
    if depth > 1:
        cmd += ["--", str(depth)]
    start = os.times()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    end = os.times()
    client_cpu = (end.children_user - start.children_user) + (end.children_system - start.children_system)
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def micros(m):
        if not m:
            return None
        v = float(m.group(1))
        return v * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]

    return {
        "requests": int(total.group(1)) if total else 0,
        "rps": float(rps.group(1)) if rps else 0.0,
        "client_cpu_pct": 100.0 * client_cpu / seconds,
        "p50_us": micros(p50),
        "p99_us": micros(p99),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "raw": out,
    }


def measure(name, command, depth, args):
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in command.split()]
    server = subprocess.Popen(["taskset", "-c", str(args.server_core)] + argv,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_listening(port):
            raise RuntimeError(f"{name} did not start listening")
        run_wrk(port, args.conns, args.warmup, depth, args.client_core)
        before = cpu_seconds(server.pid)
        result = run_wrk(port, args.conns, args.seconds, depth, args.client_core)
        after = cpu_seconds(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    requests = max(result["requests"], 1)
    user, sys_ = after[0] - before[0], after[1] - before[1]
    result.update(server=name, depth=depth, server_cpu_s=user + sys_,
                  server_us_per_req=1e6 * (user + sys_) / requests,
                  server_user_us_per_req=1e6 * user / requests,
                  server_sys_us_per_req=1e6 * sys_ / requests,
                  client_bound=result["client_cpu_pct"] > args.client_bound_pct)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", action="append", default=[], help="NAME=COMMAND with {port}")
    ap.add_argument("--corio", help="corio's http_hello binary (shown as 'corio')")
    ap.add_argument("--corio-io-uring", help="http_hello built with -DCORIO_BACKEND=io_uring "
                    "(shown as 'corio-io_uring')")
    ap.add_argument("--asio", help="the asio twin, peer_asio_http (shown as 'asio')")
    ap.add_argument("--ref", help="reference server for ratios (default: the first)")
    ap.add_argument("--depths", default="1,16", help="pipelining depths (1 = no pipelining)")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--server-core", type=int, default=1)
    ap.add_argument("--client-core", type=int, default=0)
    ap.add_argument("--client-bound-pct", type=float, default=85.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found (apt-get install wrk)")
    servers = []
    for label, binary in (("corio", args.corio), ("corio-io_uring", args.corio_io_uring),
                          ("asio", args.asio)):
        if binary:
            servers.append([label, f"{binary} --port {{port}}"])
    servers += [s.split("=", 1) for s in args.server]
    if not servers:
        sys.exit("no server: give --corio/--corio-io-uring/--asio or --server NAME=COMMAND")
    ref = args.ref or servers[0][0]
    depths = [int(d) for d in args.depths.split(",")]
    runs = []
    for depth in depths:
        for r in range(args.rounds):
            for name, command in servers:
                res = measure(name, command, depth, args)
                runs.append(res)
                print(f"# depth {depth} round {r + 1} {name}: {res['rps']:.0f} req/s, "
                      f"{res['server_us_per_req']:.3f} us/req (user {res['server_user_us_per_req']:.3f}"
                      f" sys {res['server_sys_us_per_req']:.3f}), client {res['client_cpu_pct']:.0f}%"
                      + (f", NON-2XX {res['non_2xx']}" if res["non_2xx"] else ""), flush=True)
    print()
    header = f"{'depth':>5}  {'server':<14} {'req/s med (min-max)':>26} {'srv us/req med (min-max)':>26} " \
             f"{'user':>6} {'sys':>6} {'p50us':>8} {'p99us':>9} {'cbound':>6} {'us/req÷ref':>10} " \
             f"{'user÷ref':>8} {'req/s÷ref':>9}"
    print(header)
    print("-" * len(header))
    summary = []
    for depth in depths:
        ref_runs = [x for x in runs if x["server"] == ref and x["depth"] == depth]
        for name, _ in servers:
            mine = [x for x in runs if x["server"] == name and x["depth"] == depth]
            rps = [x["rps"] for x in mine]
            cpu = [x["server_us_per_req"] for x in mine]
            cpu_ratio = statistics.median(a["server_us_per_req"] / b["server_us_per_req"]
                                          for a, b in zip(mine, ref_runs))
            rps_ratio = statistics.median(a["rps"] / max(b["rps"], 1) for a, b in zip(mine, ref_runs))
            user = statistics.median(x["server_user_us_per_req"] for x in mine)
            sys_ = statistics.median(x["server_sys_us_per_req"] for x in mine)
            user_ratio = statistics.median(a["server_user_us_per_req"] / max(b["server_user_us_per_req"], 1e-9)
                                           for a, b in zip(mine, ref_runs))
            p50 = statistics.median(x["p50_us"] or 0 for x in mine)
            p99 = statistics.median(x["p99_us"] or 0 for x in mine)
            bound = sum(x["client_bound"] for x in mine)
            print(f"{depth:>5}  {name:<14} {statistics.median(rps)/1e3:>9.1f}k ({min(rps)/1e3:.1f}k-{max(rps)/1e3:.1f}k) "
                  f"{statistics.median(cpu):>12.3f} ({min(cpu):.3f}-{max(cpu):.3f}) {user:>6.3f} {sys_:>6.3f} "
                  f"{p50:>8.0f} {p99:>9.0f} {bound:>4}/{len(mine)} {cpu_ratio:>10.2f} {user_ratio:>8.2f} "
                  f"{rps_ratio:>9.2f}")
            summary.append(dict(depth=depth, server=name, rps_median=statistics.median(rps),
                                us_per_req_median=statistics.median(cpu), us_per_req_ratio=cpu_ratio,
                                user_us_per_req_median=user, sys_us_per_req_median=sys_,
                                user_ratio=user_ratio, rps_ratio=rps_ratio, client_bound_rounds=bound))
    print("\nus/req = server CPU time (user+sys) per request, split into user and sys; ratios are medians "
          f"of per-round ratios against '{ref}' (lower us/req is better).")
    if args.json:
        for x in runs:
            x.pop("raw", None)
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
