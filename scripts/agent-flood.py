#!/usr/bin/env python3
"""Connection starvation against a real nk3-agent process (docs/RELIABILITY.md, "Connection floods").

Usage:
  scripts/agent-flood.py --run BINARY [--plain 20000] [--slow 2000] [--hold 8000] [--interval 0.1]

Starts BINARY as `serve` against a throwaway fake node root (the one scripts/rss-by-module.py builds), then, at the
same time:
  - opens --plain plain TCP connections from 127.0.0.2 that never send a byte (at most --hold open at once; a
    connection the agent closes is replaced by the next),
  - opens --slow connections from 127.0.0.3 that send the first 11 bytes of a TLS ClientHello and stall,
  - from 127.0.0.1, a reader client sends GET /v1/status on a fresh mTLS connection every --interval seconds and
    records how long each took (the coordinator's view),
and samples the agent's VmRSS, open descriptors and threads. Prints the latency figures, the agent's peak RSS, its
RSS after the flood, and its connection-refusal counters from /metrics. Loopback only (127.0.0.0/8 is routed to lo).
"""

import argparse
import importlib.util
import os
import selectors
import shutil
import socket
import ssl
import tempfile
import threading
import time

_spec = importlib.util.spec_from_file_location("rss", os.path.join(os.path.dirname(__file__), "rss-by-module.py"))
rss = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rss)

STALLED_HELLO = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03])


def vm(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) // 1024
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    out["threads"] = len(os.listdir(f"/proc/{pid}/task"))
    return out


def flood(source, port, total, hold, preamble, stats, key):
    """Keeps up to `hold` connections from `source` open until `total` were made; counts those the agent closed."""
    sel = selectors.DefaultSelector()
    made = 0
    while made < total or sel.get_map():
        while made < total and len(sel.get_map()) < hold:
            s = socket.socket()
            s.setblocking(False)
            s.bind((source, 0))
            err = s.connect_ex(("127.0.0.1", port))
            made += 1
            if err not in (0, 115):  # EINPROGRESS
                stats[key + "_connect_failed"] += 1
                s.close()
                continue
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, {"sent": False})
        for k, events in sel.select(timeout=0.05):
            s = k.fileobj
            if events & selectors.EVENT_WRITE and not k.data["sent"]:
                k.data["sent"] = True
                try:
                    if preamble:
                        s.send(preamble)
                except OSError:
                    pass
                sel.modify(s, selectors.EVENT_READ, k.data)
                continue
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                stats[key + "_closed_by_agent"] += 1
                sel.unregister(s)
                s.close()
    stats[key + "_made"] = made


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, metavar="BINARY")
    ap.add_argument("--plain", type=int, default=20000)
    ap.add_argument("--slow", type=int, default=2000)
    ap.add_argument("--hold", type=int, default=8000)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--settle", type=float, default=0, metavar="SECONDS",
                    help="after the flood, sample VmRSS every 0.5 s for up to SECONDS (stops once under --under)")
    ap.add_argument("--under", type=float, default=25, metavar="MB",
                    help="the RSS (MB = 10^6 bytes) that --settle waits for (default 25, the issue's goal)")
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="agent-flood-")
    try:
        port = rss.make_root(d)
        cmd = [os.path.realpath(args.run), "serve", "--config", f"{d}/agent.json", "--log-level", "info"]
        with rss.running_agent(cmd, d) as proc:
            time.sleep(1)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.load_verify_locations(f"{d}/tls/ca.crt")
            ctx.load_cert_chain(f"{d}/tls/reader.crt", f"{d}/tls/reader.key")

            def status(path=b"/v1/status"):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                    with ctx.wrap_socket(raw, server_hostname="bench-node") as s:
                        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: bench-node\r\nConnection: close\r\n\r\n")
                        data = b""
                        while chunk := s.recv(65536):
                            data += chunk
                        return data

            status()
            before = vm(proc.pid)
            stats = {k: 0 for k in ["plain_closed_by_agent", "slow_closed_by_agent", "plain_connect_failed",
                                    "slow_connect_failed", "plain_made", "slow_made"]}
            threads = [
                threading.Thread(target=flood, args=("127.0.0.2", port, args.plain, args.hold, b"", stats, "plain")),
                threading.Thread(target=flood, args=("127.0.0.3", port, args.slow, args.hold, STALLED_HELLO, stats, "slow")),
            ]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            latencies, failures, peak = [], 0, dict(before)
            while any(t.is_alive() for t in threads):
                t = time.monotonic()
                try:
                    ok = status().startswith(b"HTTP/1.1 200")
                except OSError:
                    ok = False
                latencies.append(time.monotonic() - t)
                failures += 0 if ok else 1
                sample = vm(proc.pid)
                for k in ("VmRSS", "fds", "threads"):
                    peak[k] = max(peak[k], sample[k])
                time.sleep(args.interval)
            elapsed = time.monotonic() - t0
            for t in threads:
                t.join()
            time.sleep(2)
            after = vm(proc.pid)
            metrics = status(b"/metrics").decode(errors="replace")
            refused = [line for line in metrics.splitlines() if line.startswith("nk3_agent_connections_refused_total")]
            latencies.sort()
            print(f"flood: {args.plain} plain from 127.0.0.2 + {args.slow} stalled handshakes from 127.0.0.3, "
                  f"<= {args.hold} open per source, {elapsed:.1f} s; {stats}")
            print(f"operator (reader, fresh mTLS each, 127.0.0.1): {len(latencies)} requests, {failures} failed, "
                  f"median {latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
            print(f"agent RSS {before['VmRSS']} MiB before, peak {peak['VmRSS']} MiB, {after['VmRSS']} MiB 2 s after; "
                  f"fds peak {peak['fds']}, after {after['fds']}; threads peak {peak['threads']}")
            print("\n".join(refused))
            if args.settle > 0:
                # VmRSS in KiB, compared in MB (10^6 bytes) as the goal is stated.
                def rss_mb():
                    with open(f"/proc/{proc.pid}/status") as f:
                        for line in f:
                            if line.startswith("VmRSS:"):
                                return int(line.split()[1]) * 1024 / 1e6
                t_end = time.monotonic()
                while True:
                    mb, waited = rss_mb(), time.monotonic() - t_end
                    if mb <= args.under or waited >= args.settle:
                        break
                    time.sleep(0.5)
                verdict = "under" if mb <= args.under else "NOT under"
                print(f"settle: {mb:.1f} MB {verdict} {args.under:g} MB {waited + 2:.1f} s after the flood ended "
                      f"(limit {args.settle + 2:g} s)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
