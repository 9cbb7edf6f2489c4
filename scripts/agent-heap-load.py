#!/usr/bin/env python3
"""Does the nk3-agent's heap stay bounded under concurrent mutual-TLS status requests, and does it depend on how
the client leaves?

Usage:
  scripts/agent-heap-load.py --run BINARY [--mode MODE] [--steps 1000,3000,10000] [--inflight 16] [--idle S] [--trim]

Starts BINARY as `serve` against a throwaway fake node root (the one scripts/rss-by-module.py builds), sends
GET /v1/status in batches up to each cumulative count in --steps, and after each batch prints anonymous memory
(Anonymous: in /proc/PID/smaps_rollup), open fds and threads, then again --idle seconds later. Modes (how each
request's client behaves):
  close       Connection: close, read to EOF, close the socket without a TLS close_notify (Python's default)
  unwrap      Connection: close, read to EOF, send close_notify (SSLSocket.unwrap) before closing
  noread      Connection: close, close the socket right after sending, without reading the answer
  keepalive   one connection per worker, all its requests on it (read each answer by Content-Length)
  badrequest  a request the parser refuses (400, the server closes), read to EOF, close without close_notify
  nocert      no client certificate: the agent refuses the handshake (the client sees an error, counted as done)
Extra environment for the agent (e.g. MALLOC_ARENA_MAX=1) is passed through. --trim finally calls malloc_trim(0)
in the agent from gdb and samples again: what is left is live, the difference was free memory glibc kept.
"""

import argparse
import concurrent.futures
import importlib.util
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

_spec = importlib.util.spec_from_file_location("rss", os.path.join(os.path.dirname(__file__), "rss-by-module.py"))
rss = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rss)

REQ = b"GET /v1/status HTTP/1.1\r\nHost: bench-node\r\n%sContent-Length: 0\r\n\r\n"


def context(d, with_certificate=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(f"{d}/tls/ca.crt")
    if with_certificate:
        ctx.load_cert_chain(f"{d}/tls/reader.crt", f"{d}/tls/reader.key")
    return ctx


def read_to_eof(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def read_response(s, buf):
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed mid-response")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, v = line.split(b":", 1)
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        rest += s.recv(65536)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("status request failed: " + head[:200].decode(errors="replace"))
    return rest[length:]


def load(ctx, port, mode, n, inflight):
    def one(_):
        if mode == "nocert":
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                try:
                    with ctx.wrap_socket(raw, server_hostname="bench-node") as s:
                        s.sendall(REQ % b"Connection: close\r\n")
                        read_to_eof(s)
                except (ssl.SSLError, OSError):
                    return
            raise RuntimeError("the agent answered a client without a certificate")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            s = ctx.wrap_socket(raw, server_hostname="bench-node")
            s.sendall(b"NOT HTTP\r\n\r\n" if mode == "badrequest" else REQ % b"Connection: close\r\n")
            if mode == "noread":
                s.close()
                return
            data = read_to_eof(s)
            if mode == "unwrap":
                try:
                    s.unwrap()
                except (ssl.SSLError, OSError):
                    pass
            s.close()
        if not data.startswith(b"HTTP/1.1 400" if mode == "badrequest" else b"HTTP/1.1 200"):
            raise RuntimeError("status request failed: " + data[:200].decode(errors="replace"))

    def worker(count):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="bench-node") as s:
                buf = b""
                for _ in range(count):
                    s.sendall(REQ % b"")
                    buf = read_response(s, buf)

    with concurrent.futures.ThreadPoolExecutor(inflight) as ex:
        if mode == "keepalive":
            counts = [n // inflight + (1 if i < n % inflight else 0) for i in range(inflight)]
            list(ex.map(worker, counts))
        else:
            list(ex.map(one, range(n)))


def sample(pid):
    anon = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                anon = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    return f"anon {anon / 1024:7.2f} MiB  fds {fds:4d}  threads {threads:3d}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, metavar="BINARY")
    ap.add_argument("--mode", default="close", choices=["close", "unwrap", "noread", "keepalive", "badrequest", "nocert"])
    ap.add_argument("--steps", default="1000,3000,10000")
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--idle", type=float, default=6.0)
    ap.add_argument("--trim", action="store_true")
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="agent-heap-")
    try:
        port = rss.make_root(d)
        cmd = [os.path.realpath(args.run), "serve", "--config", f"{d}/agent.json", "--log-level", "info"]
        with rss.running_agent(cmd, d) as proc:
            time.sleep(1)
            print(f"mode {args.mode} inflight {args.inflight}", flush=True)
            print(f"{0:6d} requests  idle        {sample(proc.pid)}", flush=True)
            ctx = context(d, with_certificate=args.mode != "nocert")
            done = 0
            for step in (int(s) for s in args.steps.split(",")):
                t = time.monotonic()
                load(ctx, port, args.mode, step - done, args.inflight)
                done = step
                took = time.monotonic() - t
                print(f"{done:6d} requests  +0 s        {sample(proc.pid)}   ({took:.1f} s)", flush=True)
                time.sleep(args.idle)
                print(f"{done:6d} requests  +{args.idle:g} s{'':7s}{sample(proc.pid)}", flush=True)
            if args.trim:
                subprocess.run(["gdb", "-batch", "-p", str(proc.pid), "-ex", "call (int) malloc_trim(0)"],
                               capture_output=True, check=True)
                print(f"{done:6d} requests  malloc_trim {sample(proc.pid)}", flush=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
