#!/usr/bin/env python3
"""Echo benchmark harness: interleaved rounds, server CPU time per message.

Example:
  run_echo_bench.py --client build/bench/echo/echo_load_client \\
      --server 'epoll=build/bench/peers/peer_epoll_echo --port {port}' \\
      --server 'uv=build/bench/peers/peer_uv_echo --port {port}' \\
      --ref epoll --json echo.json

For every connection count (default 1, 64, 1024), plus a "same-core" run with
one connection, and for every round, each server is run once in turn
(A B C D A B C D ...).  Each run starts a fresh server pinned to the server
core, waits until it accepts, and runs echo_load_client pinned to the client core.
The client prints MEASURE_START / MEASURE_END around its measured window; the
harness samples the server's CPU time (/proc/PID/task/*/schedstat, nanosecond
precision; /proc/PID/stat utime+stime as fallback) and the per-CPU counters
of /proc/stat at both markers.

Primary figure: server CPU microseconds per echoed message.  msgs/s is only
meaningful when neither side is saturated by something else: a run is
flagged client-bound when the client used more than --client-bound-pct of its
core, and "foreign" CPU (busy time on the two cores not spent in the server or
the client) shows noise from other work on the machine.

Python 3 standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


# ---------------------------------------------------------------- utilities

def die(msg):
    print(f"run_echo_bench: {msg}", file=sys.stderr)
    sys.exit(2)


def warn(msg):
    print(f"run_echo_bench: warning: {msg}", file=sys.stderr, flush=True)


def raise_nofile(need=8192):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, need)
    if hard != resource.RLIM_INFINITY and want > hard:
        try:  # raising the hard limit works as root
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            want = hard
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def free_port(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def abortive_close(s):
    """Close with RST so no TIME_WAIT is left behind."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def proc_cpu_ns(pid):
    """CPU time of all threads of pid in ns; (value, source) or (None, None)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
        for tid in tids:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total, "schedstat"
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): utime is field 14, stime field 15
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK, "stat"
    except (OSError, ValueError, IndexError):
        return None, None


def proc_stat_ticks(pid):
    """utime+stime from /proc/PID/stat in ns (tick resolution), for the record."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def cpu_counters():
    """{cpu: (idle_ticks, steal_ticks)} from /proc/stat.

    Idle (+iowait) comes from the NO_HZ idle accounting, which is precise;
    user/system are tick samples, biased low for bursty loads that idle
    between ticks, so busy time is derived as wall time minus idle."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            parts = line.split()
            v = [int(x) for x in parts[1:]]
            v += [0] * (8 - len(v))
            user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
            out[int(parts[0][3:])] = (idle + iowait, steal)
    return out


def listening_ports():
    """Local ports of TCP sockets in LISTEN state, from /proc/net/tcp{,6}."""
    ports = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) > 3 and parts[3] == "0A":
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def fmt_rate(x):
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def fmt_num(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def lo(xs):
    xs = [x for x in xs if x is not None]
    return min(xs) if xs else None


def hi(xs):
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


# ---------------------------------------------------------------- one run

class LineReader:
    """Line reader over a pipe with a deadline (no blocking past it)."""

    def __init__(self, f):
        self.fd = f.fileno()
        self.buf = b""
        self.eof = False
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)

    def readline(self, deadline):
        while b"\n" not in self.buf:
            if self.eof:
                line, self.buf = self.buf, b""
                return line.decode(errors="replace") if line else None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if not self.sel.select(left):
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def close(self):
        self.sel.close()


class Runner:
    def __init__(self, args):
        self.args = args
        self.live = []       # servers currently running (Popen)
        self.started = []    # (pid, port) of every server started
        self.tmpdir = tempfile.mkdtemp(prefix="echo_bench_")

    # -- server lifecycle

    def start_server(self, name, argv_template, port, cpu):
        argv = [a.replace("{port}", str(port)) for a in argv_template]
        errpath = os.path.join(self.tmpdir, f"{name}.{port}.stderr")
        errf = open(errpath, "wb")

        def child_setup():
            os.sched_setaffinity(0, {cpu})
            raise_nofile(8192)

        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf,
                                 preexec_fn=child_setup, start_new_session=True)
        except OSError as e:
            errf.close()
            raise RuntimeError(f"cannot start {argv[0]}: {e}") from e
        errf.close()
        p.errpath = errpath
        self.live.append(p)
        self.started.append((p.pid, port))
        deadline = time.monotonic() + self.args.start_timeout
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"server exited with {p.returncode} before accepting: "
                                   + self.server_stderr(p))
            try:
                s = socket.create_connection((self.args.host, port), timeout=0.5)
                abortive_close(s)
                return p
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not accept within "
                                       f"{self.args.start_timeout} s")
                time.sleep(0.02)

    def server_stderr(self, p):
        try:
            with open(p.errpath, "rb") as f:
                return f.read(4000).decode(errors="replace").strip()
        except OSError:
            return ""

    def stop_server(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in list(self.live):
            try:
                self.stop_server(p)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass

    # -- one measured run

    def run_one(self, name, argv_template, conns, server_cpu, client_cpu):
        a = self.args
        port = free_port(a.host)
        res = {"server": name, "conns": conns, "server_cpu_core": server_cpu,
               "client_cpu_core": client_cpu, "port": port}
        srv = None
        cli = None
        try:
            srv = self.start_server(name, argv_template, port, server_cpu)
            res["server_pid"] = srv.pid
            cmd = [a.client, "--host", a.host, "--port", str(port), "--conns", str(conns),
                   "--seconds", str(a.seconds), "--warmup", str(a.warmup), "--msg", str(a.msg),
                   "--cpu", str(client_cpu)]
            cerr = open(os.path.join(self.tmpdir, f"client.{port}.stderr"), "wb+")
            cli = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=cerr, preexec_fn=lambda: raise_nofile(conns + 64))
            reader = LineReader(cli.stdout)
            deadline = time.monotonic() + a.warmup + a.seconds + a.run_timeout
            s0 = s1 = None
            result = None
            perf = None
            syscalls = None
            try:
                while True:
                    line = reader.readline(deadline)
                    if line is None:
                        break
                    line = line.strip()
                    if line == "MEASURE_START":
                        s0 = (proc_cpu_ns(srv.pid), proc_stat_ticks(srv.pid), cpu_counters(),
                              time.monotonic())
                        if a.syscalls:
                            perf = start_syscall_count(srv.pid, self.tmpdir, port)
                    elif line == "MEASURE_END":
                        s1 = (proc_cpu_ns(srv.pid), proc_stat_ticks(srv.pid), cpu_counters(),
                              time.monotonic())
                        if perf is not None:
                            syscalls = stop_syscall_count(perf)
                            perf = None
                    elif line.startswith("{"):
                        result = json.loads(line)
            except TimeoutError:
                cli.kill()
                raise RuntimeError("client timed out")
            except BaseException:  # interrupted: do not wait for the window to end
                cli.kill()
                raise
            finally:
                if perf is not None:
                    stop_syscall_count(perf)
                reader.close()
                cli.stdout.close()
                rc = cli.wait()
                cerr.seek(0)
                client_err = cerr.read(4000).decode(errors="replace").strip()
                cerr.close()
            if result is None or s0 is None or s1 is None:
                raise RuntimeError(f"client failed (rc={rc}): {client_err}")
            res.update(result)
            res["client_rc"] = rc
            if client_err:
                res["client_stderr"] = client_err
            alive = srv.poll() is None
            (c0, src), t0, k0, _ = s0
            (c1, _), t1, k1, _ = s1
            window = result["window_s"]
            if not alive or c0 is None or c1 is None:
                raise RuntimeError("server died during the run: " + self.server_stderr(srv))
            msgs = result["msgs"]
            srv_ns = c1 - c0
            res["server_cpu_source"] = src
            res["server_cpu_s"] = srv_ns / 1e9
            res["server_cpu_pct"] = 100.0 * srv_ns / 1e9 / window if window > 0 else None
            res["server_us_per_msg"] = srv_ns / 1e3 / msgs if msgs else None
            if syscalls is not None and msgs:
                res["server_syscalls_per_msg"] = syscalls / msgs
            if t0 is not None and t1 is not None:
                res["server_stat_us_per_msg"] = (t1 - t0) / 1e3 / msgs if msgs else None
            # Busy time on the cores in use = wall - idle - steal; what the
            # server and the client did not use is "foreign" (other load,
            # kernel threads, ksoftirqd, the harness itself).
            wall = s1[3] - s0[3]
            cores = sorted({server_cpu, client_cpu})
            idle = sum(k1[c][0] - k0[c][0] for c in cores if c in k0 and c in k1) / CLK_TCK
            steal = sum(k1[c][1] - k0[c][1] for c in cores if c in k0 and c in k1) / CLK_TCK
            busy = wall * len(cores) - idle - steal
            client_s = result["client_cpu_pct"] / 100.0 * window
            res["foreign_cpu_pct"] = 100.0 * (busy - srv_ns / 1e9 - client_s) / wall
            res["steal_pct"] = 100.0 * steal / wall
            res["client_bound"] = result["client_cpu_pct"] > a.client_bound_pct
            res["server_bound"] = (res["server_cpu_pct"] or 0) > a.client_bound_pct
            res["server_stderr"] = self.server_stderr(srv)
            if result.get("connected", conns) < conns or result.get("errors", 0) > 0:
                raise RuntimeError(f"connection errors: connected {result.get('connected')}"
                                   f"/{conns}, errors {result.get('errors')}: {client_err}")
            res["ok"] = True
        except RuntimeError as e:
            res["ok"] = False
            res["error"] = str(e)
            if cli is not None and cli.poll() is None:
                cli.kill()
                cli.wait()
        finally:
            if srv is not None:
                self.stop_server(srv)
        return res

    def leak_check(self):
        """Every server reaped and every port we used is bindable again."""
        problems = []
        # An io_uring server's listening socket can outlive the process for a
        # moment: the ring (and the files its pending requests hold) is torn
        # down asynchronously by the kernel.  Give that a few seconds.
        ours = {port for _, port in self.started}
        deadline = time.monotonic() + 5.0
        while True:
            listening = listening_ports() & ours
            if not listening or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for p in self.live:
            problems.append(f"server pid {p.pid} still running")
        for pid, port in self.started:
            if os.path.exists(f"/proc/{pid}"):
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        state = f.read().rsplit(")", 1)[1].split()[0]
                except OSError:
                    state = "?"
                if state != "Z":
                    problems.append(f"pid {pid} (port {port}) still exists, state {state}")
            if port in listening:
                problems.append(f"port {port} still has a listening socket")
        return problems


# ---------------------------------------------------------------- summary

def start_syscall_count(pid, tmpdir, port):
    """perf stat counting the server's system calls (raw_syscalls:sys_enter) from now on;
    None when perf is missing or may not trace."""
    out = os.path.join(tmpdir, f"perf.{port}.txt")
    try:
        p = subprocess.Popen(["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter",
                              "-p", str(pid), "-o", out],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    except OSError:
        return None
    return (p, out)


def stop_syscall_count(perf):
    p, out = perf
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    try:
        with open(out) as f:
            for line in f:
                fields = line.strip().split(",")
                if len(fields) > 2 and "raw_syscalls:sys_enter" in line:
                    return int(fields[0])
    except (OSError, ValueError):
        pass
    return None


def summarize(runs, servers, configs, ref):
    rows = []
    for label, conns, _, _ in configs:
        by_server = {}
        for name, _ in servers:
            by_server[name] = [r for r in runs if r["config"] == label and r["server"] == name]
        ref_runs = {r["round"]: r for r in by_server.get(ref, []) if r["ok"]}
        for name, _ in servers:
            rs = by_server[name]
            ok = [r for r in rs if r["ok"]]

            def col(key, ok=ok):
                return [r.get(key) for r in ok]

            # Paired per-round ratios against the reference (same round =
            # adjacent in time), then their median.
            cpu_ratio, rate_ratio = [], []
            for r in ok:
                rr = ref_runs.get(r["round"])
                if rr is None:
                    continue
                if r.get("server_us_per_msg") and rr.get("server_us_per_msg"):
                    cpu_ratio.append(r["server_us_per_msg"] / rr["server_us_per_msg"])
                if r.get("msgs_per_s") and rr.get("msgs_per_s"):
                    rate_ratio.append(r["msgs_per_s"] / rr["msgs_per_s"])
            row = {
                "config": label, "conns": conns, "server": name,
                "rounds": len(rs), "ok_rounds": len(ok),
                "msgs_per_s": {"median": med(col("msgs_per_s")), "min": lo(col("msgs_per_s")),
                               "max": hi(col("msgs_per_s"))},
                "server_us_per_msg": {"median": med(col("server_us_per_msg")),
                                      "min": lo(col("server_us_per_msg")),
                                      "max": hi(col("server_us_per_msg"))},
                "server_cpu_pct": med(col("server_cpu_pct")),
                "p50_us": med(col("p50_us")), "p99_us": med(col("p99_us")),
                "client_cpu_pct": med(col("client_cpu_pct")),
                "client_bound_rounds": sum(1 for r in ok if r.get("client_bound")),
                "server_bound_rounds": sum(1 for r in ok if r.get("server_bound")),
                "foreign_cpu_pct": med(col("foreign_cpu_pct")),
                "steal_pct": med(col("steal_pct")),
                "ref": ref,
                "syscalls_per_msg": med([x for x in col("server_syscalls_per_msg")
                                         if x is not None]),
                "cpu_per_msg_vs_ref": med(cpu_ratio),
                "msgs_per_s_vs_ref": med(rate_ratio),
                "errors": [r["error"] for r in rs if not r["ok"]],
            }
            rows.append(row)
    return rows


def print_table(rows, ref, out=sys.stdout):
    hdr = ["config", "server", "msgs/s med (min-max)", "srv us/msg med (min-max)", "srv%",
           "p50us", "p99us", "cli%", "cbound", "foreign%", "us/msg÷ref", "msgs/s÷ref"]
    syscalls = any(r.get("syscalls_per_msg") is not None for r in rows)
    if syscalls:
        hdr.append("sys/msg")
    table = [hdr]
    for r in rows:
        m, c = r["msgs_per_s"], r["server_us_per_msg"]
        if r["ok_rounds"] == 0:
            table.append([r["config"], r["server"], "FAILED"] + [""] * (len(hdr) - 3))
            continue
        table.append([
            r["config"], r["server"],
            f"{fmt_rate(m['median'])} ({fmt_rate(m['min'])}-{fmt_rate(m['max'])})",
            f"{fmt_num(c['median'])} ({fmt_num(c['min'])}-{fmt_num(c['max'])})",
            fmt_num(r["server_cpu_pct"], 0),
            fmt_num(r["p50_us"], 1), fmt_num(r["p99_us"], 1),
            fmt_num(r["client_cpu_pct"], 0),
            f"{r['client_bound_rounds']}/{r['ok_rounds']}"
            + ("" if r["ok_rounds"] == r["rounds"] else f" ({r['rounds'] - r['ok_rounds']} failed)"),
            fmt_num(r["foreign_cpu_pct"], 0),
            fmt_num(r["cpu_per_msg_vs_ref"]), fmt_num(r["msgs_per_s_vs_ref"]),
        ] + ([fmt_num(r.get("syscalls_per_msg"))] if syscalls else []))
    widths = [max(len(row[i]) for row in table) for i in range(len(hdr))]
    for i, row in enumerate(table):
        line = "  ".join(cell.ljust(widths[j]) if j < 2 else cell.rjust(widths[j])
                         for j, cell in enumerate(row))
        print(line.rstrip(), file=out)
        if i == 0:
            print("-" * len(line), file=out)
    print(file=out)
    print(f"us/msg = server CPU time (user+sys) per echoed message; ratios are medians of "
          f"per-round ratios against '{ref}' (lower us/msg is better).", file=out)
    print("cbound = rounds where the client used more than the client-bound threshold of its "
          "core: msgs/s then measures the client, not the server.", file=out)
    print("foreign% = busy CPU on both cores not used by server or client (other load, "
          "kernel threads): large values mean a noisy run.", file=out)


# ---------------------------------------------------------------- main

def find_client(explicit):
    if explicit:
        return explicit
    env = os.environ.get("ECHO_CLIENT")
    if env:
        return env
    for cand in (os.path.join(REPO, "build", "bench", "echo", "echo_load_client"),
                 os.path.join(os.getcwd(), "bench", "echo", "echo_load_client"),
                 os.path.join(os.getcwd(), "echo_load_client")):
        if os.access(cand, os.X_OK):
            return cand
    found = shutil.which("echo_load_client")
    if found:
        return found
    die("echo_load_client not found: pass --client PATH (or set ECHO_CLIENT)")


def parse_server(spec):
    if "=" not in spec:
        die(f"--server wants NAME=COMMAND, got {spec!r}")
    name, cmd = spec.split("=", 1)
    argv = shlex.split(cmd)
    if not name or not argv:
        die(f"bad --server {spec!r}")
    if not any("{port}" in a for a in argv):
        die(f"--server {name}: the command needs a {{port}} placeholder")
    exe = argv[0]
    if os.sep in exe:
        if not os.access(exe, os.X_OK):
            die(f"--server {name}: {exe} is not executable")
    elif not shutil.which(exe):
        die(f"--server {name}: {exe} not found in PATH")
    return name, argv


def main():
    ap = argparse.ArgumentParser(
        description="Interleaved echo benchmark: server CPU time per message.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--server", action="append", default=[], metavar="NAME=COMMAND",
                    help="server to measure, e.g. 'epoll=./peer_epoll_echo --port {port}' "
                         "(repeatable; order is the interleaving order)")
    ap.add_argument("--ref", help="reference server for ratios (default: the first)")
    ap.add_argument("--client", help="echo_load_client binary (default: build/bench/echo/echo_load_client, "
                                     "$ECHO_CLIENT, PATH)")
    ap.add_argument("--conns", default="1,64,1024", help="connection counts (default 1,64,1024)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up seconds (default 1)")
    ap.add_argument("--seconds", type=float, default=None, help="measured seconds (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke-test durations: 1 round, 0.25 s warm-up, 0.75 s measured")
    ap.add_argument("--no-same-core", action="store_true",
                    help="skip the 1-connection run with client and server on one core")
    ap.add_argument("--msg", type=int, default=64, help="message size in bytes (default 64)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--server-core", type=int, default=1)
    ap.add_argument("--client-core", type=int, default=0)
    ap.add_argument("--client-bound-pct", type=float, default=85.0)
    ap.add_argument("--start-timeout", type=float, default=5.0)
    ap.add_argument("--run-timeout", type=float, default=20.0,
                    help="slack beyond warm-up+measure before a client is killed")
    ap.add_argument("--json", help="write runs and summary to this file")
    ap.add_argument("--syscalls", action="store_true",
                    help="count the server's system calls in the measured window with "
                         "perf stat -e raw_syscalls:sys_enter (column sys/msg)")
    args = ap.parse_args()

    if not args.server:
        die("at least one --server NAME=COMMAND is required")
    servers = [parse_server(s) for s in args.server]
    names = [n for n, _ in servers]
    if len(set(names)) != len(names):
        die("server names must be unique")
    ref = args.ref or names[0]
    if ref not in names:
        die(f"--ref {ref} is not one of {', '.join(names)}")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.warmup is None:
        args.warmup = 0.25 if args.quick else 1.0
    if args.seconds is None:
        args.seconds = 0.75 if args.quick else 3.0
    args.client = find_client(args.client)
    if not os.access(args.client, os.X_OK):
        die(f"client {args.client} is not executable")
    try:
        conn_counts = [int(x) for x in args.conns.split(",") if x.strip()]
    except ValueError:
        die(f"bad --conns {args.conns!r}")

    cpus = os.sched_getaffinity(0)
    for c in (args.server_core, args.client_core):
        if c not in cpus:
            die(f"core {c} is not available (allowed: {sorted(cpus)})")
    if args.server_core == args.client_core:
        warn("server and client share a core for every run")

    raise_nofile(max(conn_counts) + 256)
    # Keep the harness itself off the server's core.
    os.sched_setaffinity(0, {args.client_core})

    configs = []  # (label, conns, server core, client core)
    for n in conn_counts:
        configs.append((f"{n}c", n, args.server_core, args.client_core))
        if n == 1 and not args.no_same_core:
            configs.append(("1c-same", 1, args.client_core, args.client_core))

    total = len(configs) * args.rounds * len(servers)
    est = total * (args.warmup + args.seconds + 0.3)
    print(f"# echo bench: {len(servers)} servers x {len(configs)} configs x {args.rounds} rounds "
          f"= {total} runs, ~{est:.0f} s; warm-up {args.warmup} s, measure {args.seconds} s, "
          f"msg {args.msg} B; server core {args.server_core}, client core {args.client_core}",
          flush=True)

    runner = Runner(args)
    runs = []
    started = datetime.datetime.now(datetime.timezone.utc)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    interrupted = False
    try:
        i = 0
        for label, conns, score, ccore in configs:
            for rnd in range(args.rounds):
                for name, argv in servers:
                    i += 1
                    r = runner.run_one(name, argv, conns, score, ccore)
                    r["config"] = label
                    r["round"] = rnd
                    runs.append(r)
                    if r["ok"]:
                        msg = (f"{r['msgs_per_s']:.0f} msg/s, {r['server_us_per_msg']:.2f} us/msg, "
                               f"client {r['client_cpu_pct']:.0f}%, "
                               f"foreign {r['foreign_cpu_pct']:.0f}%")
                    else:
                        msg = "FAILED: " + r["error"]
                    print(f"# [{i}/{total}] {label} round {rnd + 1} {name}: {msg}",
                          file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        interrupted = True
        warn("interrupted: summarizing the runs done so far")
    finally:
        runner.stop_all()

    problems = runner.leak_check()
    rows = summarize(runs, servers, configs, ref)
    print()
    print_table(rows, ref)
    if problems:
        print("LEAK CHECK FAILED: " + "; ".join(problems))
    else:
        print(f"leak check: {len(runner.started)} servers started, all reaped, "
              "no listener left on their ports")
    failed = [r for r in runs if not r["ok"]]
    for r in failed:
        print(f"failed: {r['config']} round {r['round'] + 1} {r['server']}: {r['error']}")

    if args.json:
        doc = {
            "meta": {
                "started_utc": started.isoformat(),
                "host": platform.node(), "kernel": platform.release(),
                "cpus": os.cpu_count(), "server_core": args.server_core,
                "client_core": args.client_core, "rounds": args.rounds,
                "warmup_s": args.warmup, "seconds": args.seconds, "msg": args.msg,
                "conns": conn_counts, "quick": args.quick, "ref": ref,
                "client": args.client, "client_bound_pct": args.client_bound_pct,
                "servers": {n: a for n, a in servers},
                "interrupted": interrupted, "leak_problems": problems,
            },
            "runs": runs,
            "summary": rows,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    shutil.rmtree(runner.tmpdir, ignore_errors=True)
    return 1 if (failed or problems or interrupted) else 0


if __name__ == "__main__":
    sys.exit(main())
