#!/usr/bin/env python3
"""Where a running nk3-agent's resident memory sits: by mapping, by ELF section and by module.

Usage:
  scripts/rss-by-module.py --run BINARY [--requests N] [--settle S] [--top N] [--json PATH]
  scripts/rss-by-module.py --run BINARY --callgrind [--requests N] [--order-file PATH]
  scripts/rss-by-module.py --pid PID [--binary PATH] [--top N] [--json PATH]

--run starts BINARY as `serve` against a throwaway fake node root (like the `agent` bench scenario: certificates
from openssl, systemctl stubbed, loopback port), waits for "nk3-agent listening", lets it settle (1 s, as the
bench does), samples it, optionally sends N status requests over mutual TLS (reader certificate) and samples
again, then stops it. --pid samples a process that is already running.

Resident pages come from /proc/PID/pagemap (bit 63 = present; bit 61 = file page, clear for a copied-on-write
private page). Pages of the binary are mapped to ELF virtual addresses (load bias = start of the offset-0
mapping), then to sections (readelf -S) and to symbols (nm -n -S); each present page's 4 KiB is split over the
symbols it overlaps, and a symbol's module comes from its mangled name (`$s7NIOCore…` -> NIOCore, `$ss`/`$sS…`
-> Swift, CNIOBoringSSL_/CCryptoBoringSSL_ prefixes, swift runtime C++ names, libdispatch …); a symbol whose
name says nothing (C statics, compiler labels) takes the module of the nearest named symbol before it, since
the linker lays each object file out contiguously.

Beware: Linux maps file pages "around" a fault (fault-around: a touch of one text page maps the 64 KiB around it
when those pages are in the page cache, and this kernel reads executable mappings in large folios even under
MADV_RANDOM), so "present" is far more than "touched": a function executed once keeps its 64 KiB window
resident. --callgrind runs the agent under valgrind's callgrind instead and reports the code really executed
(start, settle, --requests) by module; --order-file writes those functions (in the order callgrind lists them) as
a symbol ordering file for lld (Sources/nk3-agent/link-order.txt), so that executed code sits together and
touches few 64 KiB windows.
"""

import argparse
import bisect
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

PAGE = os.sysconf("SC_PAGE_SIZE")

# ---------------------------------------------------------------------------------------------- ELF tables


def sections_of(binary):
    """Allocated sections: [(start, end, name)] sorted by start (virtual addresses)."""
    out = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout
    secs = []
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+\S+\s+(\S*)", line)
        if not m:
            continue
        name, _typ, addr, _off, size, flags = m.groups()
        addr, size = int(addr, 16), int(size, 16)
        if "A" in flags and size > 0 and addr > 0:
            secs.append((addr, addr + size, name))
    secs.sort()
    return secs


SWIFT_FAMILIES = [
    # (regex on module name, family)
    (r"^NIOSSL$|^NIOTLS$", "NIOSSL"),
    (r"^_?NIO|^CNIO(?!BoringSSL)", "NIO"),
    (r"^CNIOBoringSSL", "CNIOBoringSSL"),
    (r"^CCryptoBoringSSL|^CryptoBoringWrapper$", "CCryptoBoringSSL"),
    (r"^_?Crypto|^CXKCP", "Crypto"),
    (r"^X509$|^_CertificateInternals$", "X509"),
    (r"^SwiftASN1$", "SwiftASN1"),
    (r"^FoundationEssentials$|^_FoundationCShims$|^_FoundationCollections$", "FoundationEssentials"),
    (r"^Swift$|^swift runtime$|^SwiftShims$", "swiftCore"),
    (r"^_Concurrency$|^concurrency runtime$", "Concurrency"),
    (r"^Dispatch$|^libdispatch$", "Dispatch"),
    (r"^_RegexParser$|^_StringProcessing$", "Regex (_StringProcessing)"),
    (r"^ArgumentParser", "ArgumentParser"),
    (r"^Prometheus$", "Prometheus"),
    (r"^Logging$", "Logging"),
    (r"^CoreMetrics$|^Metrics$", "Metrics"),
    (r"^ServiceLifecycle$|^UnixSignals$", "ServiceLifecycle"),
    (r"^AsyncAlgorithms$|^_AsyncAlgorithms", "AsyncAlgorithms"),
    (r"^OrderedCollections$|^DequeModule$|^InternalCollectionsUtilities$|^Collections$", "Collections"),
    (r"^Atomics$|^_AtomicsShims$", "Atomics"),
    (r"^Synchronization$", "Synchronization"),
    (r"^NK3|^nk3", "NK3*"),
    (r"^Glibc$|^SwiftGlibc$|^__C \(imported\)$", "Glibc/imported C"),
]


def family_of(module):
    for rx, fam in SWIFT_FAMILIES:
        if re.search(rx, module):
            return fam
    return module


CONCURRENCY_C = re.compile(
    r"^_?swift_(task|job|continuation|asyncLet|taskGroup|defaultActor|distributed|executor|get_clock|sleep|"
    r"concurrency|deletedAsyncMethodError)|^_?swift_.*Actor|Concurrency|^_ZN5swift\d*(Async|Task|Job|Actor)")


def module_of_symbol(name):
    """Module from a symbol's name, or None when the name does not say."""
    n = name
    if n.startswith("got."):
        n = n[4:]
    if n.startswith("$s"):
        r = n[2:]
        m = re.match(r"(\d+)", r)
        if m:
            ln = int(m.group(1))
            mod = r[len(m.group(1)):len(m.group(1)) + ln]
            return mod or None
        if r.startswith("s"):
            return "Swift"
        if r.startswith("Sc"):
            return "_Concurrency"
        if r.startswith("So"):
            return "__C (imported)"
        if r.startswith("S"):
            return "Swift"
        return None
    if "CNIOBoringSSL" in n:
        return "CNIOBoringSSL"
    if "CCryptoBoringSSL" in n:
        return "CCryptoBoringSSL"
    if "_FoundationCShims" in n or n.startswith("_stringshims"):
        return "_FoundationCShims"
    if CONCURRENCY_C.search(n):
        return "concurrency runtime"
    if re.match(r"^_?swift_|^_ZN5swift|^_ZN7__swift|^_ZNK5swift|^_ZNK7__swift|^_swift|^__swift", n):
        return "swift runtime"
    if re.match(r"^_?dispatch_|^_dispatch|^_os_|^_Block_|^_NSConcreteStackBlock|^_NSConcreteGlobalBlock", n):
        return "libdispatch"
    if re.match(r"^c_nio_|^catmc_nio|^CNIO", n):
        return "NIO C shims"
    return None


def symbols_of(binary):
    """[(start, end, module, name)] sorted by start; unnamed-module symbols inherit the previous one."""
    out = subprocess.run(["nm", "-n", "-S", "--defined-only", binary], capture_output=True, text=True, check=True)
    rows = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4:
            addr, size, typ, name = parts
            size = int(size, 16)
        elif len(parts) == 3:
            addr, typ, name = parts
            size = 0
        else:
            continue
        if typ in "aAUwvN":
            continue
        addr = int(addr, 16)
        if addr == 0:
            continue
        rows.append([addr, size, name])
    rows.sort(key=lambda r: (r[0], -r[1]))
    # A "module" named by fewer than 20 symbols is a mangling this parser misreads (an associated type name,
    # say): those symbols inherit like unnamed ones.
    mods = [module_of_symbol(name) for _, _, name in rows]
    counts = collections.Counter(mods)
    syms = []
    last_mod = "(unknown)"
    for i, (addr, size, name) in enumerate(rows):
        mod = mods[i]
        if mod is None or counts[mod] < 20:
            mod = last_mod
        else:
            last_mod = mod
        nxt = rows[i + 1][0] if i + 1 < len(rows) else addr + max(size, 1)
        # A symbol covers its size; without one, up to the next symbol.
        end = addr + size if size else nxt
        if end <= addr:
            continue
        syms.append((addr, end, mod, name))
    return syms


# ---------------------------------------------------------------------------------------------- /proc


def read_maps(pid):
    maps = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            path = parts[5].strip() if len(parts) > 5 else ""
            maps.append((lo, hi, parts[1], int(parts[2], 16), path))
    return maps


def present_pages(pid, lo, hi):
    """[(vaddr, is_file_page)] for the present pages of [lo, hi)."""
    n = (hi - lo) // PAGE
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek((lo // PAGE) * 8)
        data = f.read(n * 8)
    res = []
    for i, (v,) in enumerate(struct.iter_unpack("<Q", data)):
        if v >> 63 & 1:
            res.append((lo + i * PAGE, bool(v >> 61 & 1)))
    return res


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------- analysis


def analyse(pid, binary, top):
    real = os.path.realpath(binary)
    maps = read_maps(pid)
    secs = sections_of(real)
    sec_starts = [s[0] for s in secs]
    syms = symbols_of(real)
    sym_starts = [s[0] for s in syms]

    # Residency by mapping (whole process).
    by_mapping = collections.Counter()
    private_by_mapping = collections.Counter()
    bias = None
    for lo, hi, perms, off, path in maps:
        if os.path.realpath(path) == real and off == 0 and bias is None:
            bias = lo
    bin_hi = None
    if bias is not None:
        bin_hi = bias + max(s[1] for s in secs)
    binary_pages = []
    for lo, hi, perms, off, path in maps:
        if path.startswith("[vsyscall]"):
            continue
        pages = present_pages(pid, lo, hi)
        in_binary = bias is not None and lo >= bias and hi <= bin_hi + PAGE and (
            os.path.realpath(path) == real or path == "")
        if in_binary:
            label = f"{os.path.basename(real)} {perms}" + ("" if path else " (bss)")
            binary_pages += [(va, fp, perms) for va, fp in pages]
        elif path == "":
            label = "[anon]"
        elif path.startswith("["):
            label = path
        else:
            label = os.path.basename(path) + " " + perms
        by_mapping[label] += len(pages) * PAGE // 1024
        private_by_mapping[label] += sum(1 for _, fp in pages if not fp) * PAGE // 1024

    by_section = collections.Counter()
    by_section_private = collections.Counter()
    by_module = collections.Counter()
    by_family = collections.Counter()
    by_module_section = collections.Counter()
    by_symbol = collections.Counter()
    for va, is_file, perms in binary_pages:
        lo = va - bias
        hi = lo + PAGE
        # sections
        i = max(bisect.bisect_right(sec_starts, lo) - 1, 0)
        covered = 0
        page_secs = []
        while i < len(secs) and secs[i][0] < hi:
            s_lo, s_hi, name = secs[i]
            ov = min(hi, s_hi) - max(lo, s_lo)
            if ov > 0:
                by_section[name] += ov
                if not is_file:
                    by_section_private[name] += ov
                covered += ov
                page_secs.append((max(lo, s_lo), min(hi, s_hi), name))
            i += 1
        if covered < PAGE:
            by_section["(between sections)"] += PAGE - covered
        # symbols, within each section piece of the page
        for p_lo, p_hi, sname in page_secs:
            j = max(bisect.bisect_right(sym_starts, p_lo) - 1, 0)
            # step back over symbols that may still cover p_lo
            k = j
            while k > 0 and j - k < 8 and syms[k - 1][1] > p_lo:
                k -= 1
            got = 0
            seen_hi = p_lo
            for a_lo, a_hi, mod, name in syms[k:]:
                if a_lo >= p_hi:
                    break
                o_lo, o_hi = max(p_lo, a_lo, seen_hi), min(p_hi, a_hi)
                if o_hi <= o_lo:
                    continue
                ov = o_hi - o_lo
                seen_hi = o_hi
                by_module[mod] += ov
                by_family[family_of(mod)] += ov
                by_module_section[(family_of(mod), sname)] += ov
                by_symbol[(mod, name)] += ov
                got += ov
            if got < p_hi - p_lo:
                rest = p_hi - p_lo - got
                by_module["(no symbol: " + sname + ")"] += rest
                by_family["(no symbol)"] += rest
                by_module_section[("(no symbol)", sname)] += rest

    return {
        "pid": pid,
        "VmRSS_KiB": status_kib(pid, "VmRSS"),
        "RssAnon_KiB": status_kib(pid, "RssAnon"),
        "RssFile_KiB": status_kib(pid, "RssFile"),
        "open_fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": status_kib(pid, "Threads"),
        "by_mapping_KiB": dict(by_mapping.most_common()),
        "by_mapping_private_KiB": dict(private_by_mapping.most_common()),
        "binary_sections_KiB": {k: v / 1024 for k, v in by_section.most_common()},
        "binary_sections_private_KiB": {k: v / 1024 for k, v in by_section_private.most_common()},
        "binary_families_KiB": {k: v / 1024 for k, v in by_family.most_common()},
        "binary_modules_KiB": {k: v / 1024 for k, v in by_module.most_common()},
        "binary_family_section_KiB": {f"{f} | {s}": v / 1024 for (f, s), v in by_module_section.most_common(60)},
        "top_symbols_KiB": [(m, n, v / 1024) for (m, n), v in by_symbol.most_common(top)],
    }


def executed(callgrind_out, binary, args):
    """Functions of `binary` that callgrind saw execute, by module, and optionally the linker order file."""
    obs, fns = {}, {}
    cur_ob = None
    seen = {}
    name_rx = re.compile(r"^(c?)(ob|fn)=\((\d+)\)(?: (.*))?$")
    base = os.path.basename(binary)
    with open(callgrind_out, errors="replace") as f:
        for line in f:
            m = name_rx.match(line.rstrip("\n"))
            if not m:
                continue
            called, kind, num, name = m.groups()
            table = obs if kind == "ob" else fns
            if name is not None:
                table[num] = name
            if called:
                continue
            if kind == "ob":
                cur_ob = obs[num]
            elif cur_ob and os.path.basename(cur_ob) == base:
                # callgrind marks recursion levels with 'N
                seen.setdefault(re.sub(r"'\d+$", "", fns[num]), len(seen))
    syms = symbols_of(binary)
    size = {name: end - start for start, end, _, name in syms}
    module = {name: mod for _, _, mod, name in syms}
    by_family = collections.Counter()
    for name in seen:
        by_family[family_of(module.get(name, "(not in symbol table)"))] += size.get(name, 0)
    total = sum(by_family.values())
    print(f"== code executed (callgrind): {len(seen)} functions, {total / 1024:.0f} KiB")
    for k, v in by_family.most_common():
        print(f"{v / 1024:9.1f}  {k}")
    if args.order_file:
        with open(args.order_file, "w") as f:
            f.write("\n".join(sorted(seen, key=seen.get)) + "\n")
        print(f"wrote {len(seen)} symbols to {args.order_file}")
    return {"executed_functions": len(seen), "executed_KiB": total / 1024,
            "executed_by_family_KiB": {k: v / 1024 for k, v in by_family.most_common()}}


def demangle(names):
    tool = shutil.which("swift-demangle")
    if not tool or not names:
        return names
    out = subprocess.run([tool, "--simplified"], input="\n".join(names), capture_output=True, text=True).stdout
    lines = out.splitlines()
    return lines if len(lines) == len(names) else names


def report(r, title, top):
    print(f"== {title}: pid {r['pid']}  VmRSS {r['VmRSS_KiB'] / 1024:.2f} MiB "
          f"(anon {r['RssAnon_KiB'] / 1024:.2f}, file {r['RssFile_KiB'] / 1024:.2f}); "
          f"{r['open_fds']} open fds, {r['threads']} threads")
    print("\n-- resident by mapping (KiB; private = copied-on-write or anonymous)")
    for k, v in r["by_mapping_KiB"].items():
        print(f"{v:9.0f}  {r['by_mapping_private_KiB'].get(k, 0):9.0f}  {k}")
    print("\n-- binary: resident by section (KiB, private KiB)")
    for k, v in r["binary_sections_KiB"].items():
        print(f"{v:9.1f}  {r['binary_sections_private_KiB'].get(k, 0):9.1f}  {k}")
    total = sum(r["binary_families_KiB"].values())
    print(f"\n-- binary: resident by module family (KiB; total {total:.0f})")
    for k, v in r["binary_families_KiB"].items():
        print(f"{v:9.1f}  {k}")
    print("\n-- binary: resident by module (KiB)")
    for k, v in list(r["binary_modules_KiB"].items())[:60]:
        print(f"{v:9.1f}  {k}")
    print("\n-- binary: family x section, largest (KiB)")
    for k, v in list(r["binary_family_section_KiB"].items())[:40]:
        print(f"{v:9.1f}  {k}")
    syms = r["top_symbols_KiB"]
    names = demangle([n for _, n, _ in syms])
    print(f"\n-- binary: top {top} symbols by resident bytes (KiB)")
    for (m, _, v), dn in zip(syms, names):
        print(f"{v:9.1f}  {m:22.22s} {dn[:150]}")


# ---------------------------------------------------------------------------------------------- --run harness



def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, **kw)


def make_root(d):
    for sub in ["etc/nixos", "nix/store/0000-nixos-system-bench-node-24.05/kernel-modules/lib/modules/6.6.30",
                "nix/var/nix/profiles/per-user/root", "run", "proc/sys/kernel/random", "root", "bin", "tls", "state"]:
        os.makedirs(f"{d}/{sub}", exist_ok=True)
    system = f"{d}/nix/store/0000-nixos-system-bench-node-24.05"

    def write(rel, text, mode=0o644):
        with open(f"{d}/{rel}", "w") as f:
            f.write(text)
        os.chmod(f"{d}/{rel}", mode)

    write("nix/store/0000-nixos-system-bench-node-24.05/nixos-version", "24.05.1\n")
    os.symlink(system, f"{d}/nix/var/nix/profiles/system-1-link")
    os.symlink("system-1-link", f"{d}/nix/var/nix/profiles/system")
    os.symlink(system, f"{d}/run/current-system")
    os.symlink(system, f"{d}/run/booted-system")
    write("etc/nixos/configuration.nix", '{ ... }: { networking.hostName = "bench-node"; }\n')
    write("proc/sys/kernel/hostname", "bench-node\n")
    write("proc/sys/kernel/osrelease", "6.6.30\n")
    write("proc/sys/kernel/random/boot_id", "0b7c1a3e-4d2f-4e5a-9c61-0d1e2f3a4b5c\n")
    write("proc/uptime", "1234.56 2000.00\n")
    write("root/.nix-channels", "https://nixos.org/channels/nixos-24.05 nixos\n")
    write("bin/systemctl", '#!/bin/sh\n[ "$1" = is-active ] && { echo inactive; exit 3; }\nexit 1\n', 0o755)

    t = f"{d}/tls"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    sh("openssl", "req", "-x509", *ec, "-keyout", f"{t}/ca.key", "-out", f"{t}/ca.crt", "-days", "2",
       "-subj", "/CN=rss-ca", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    for name, subj, ext in [
        ("agent", "/CN=bench-node", "subjectAltName=DNS:bench-node,IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("reader", "/OU=nk3-reader/CN=rss-reader", "extendedKeyUsage=clientAuth"),
    ]:
        sh("openssl", "req", *ec, "-keyout", f"{t}/{name}.key", "-out", f"{t}/{name}.csr", "-subj", subj)
        with open(f"{t}/{name}.ext", "w") as f:
            f.write(ext + "\n")
        sh("openssl", "x509", "-req", "-in", f"{t}/{name}.csr", "-CA", f"{t}/ca.crt", "-CAkey", f"{t}/ca.key",
           "-CAcreateserial", "-days", "2", "-out", f"{t}/{name}.crt", "-extfile", f"{t}/{name}.ext")
        os.chmod(f"{t}/{name}.key", 0o600)

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = lambda rel: f"{d}/{rel}"  # noqa: E731
    config = {
        "nodeName": "bench-node", "listenAddress": "127.0.0.1", "port": port,
        "tls": {"certFile": p("tls/agent.crt"), "keyFile": p("tls/agent.key"), "caFile": p("tls/ca.crt")},
        "signingPublicKeys": ["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="],
        "stateDir": p("state"), "configDir": p("etc/nixos"), "kubeletHealthzURL": "http://127.0.0.1:1/healthz",
        "commands": {"nixosRebuild": "/bin/false", "nixChannel": "/bin/false", "nixEnv": "/bin/false",
                     "systemctl": p("bin/systemctl")},
        "paths": {"currentSystem": p("run/current-system"), "bootedSystem": p("run/booted-system"),
                  "systemProfile": p("nix/var/nix/profiles/system"), "channelsFile": p("root/.nix-channels"),
                  "channelsProfile": p("nix/var/nix/profiles/per-user/root/channels"),
                  "osrelease": p("proc/sys/kernel/osrelease"), "bootID": p("proc/sys/kernel/random/boot_id"),
                  "uptime": p("proc/uptime"), "hostname": p("proc/sys/kernel/hostname")},
    }
    with open(p("agent.json"), "w") as f:
        json.dump(config, f)
    return port


def status_requests(d, port, n, inflight=16):
    """n GET /v1/status over mutual TLS, `inflight` connections at a time (fresh connection each)."""
    import concurrent.futures
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(f"{d}/tls/ca.crt")
    ctx.load_cert_chain(f"{d}/tls/reader.crt", f"{d}/tls/reader.key")

    def one(_):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="bench-node") as s:
                s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: bench-node\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            raise RuntimeError("status request failed: " + data[:200].decode(errors="replace"))

    with concurrent.futures.ThreadPoolExecutor(inflight) as ex:
        list(ex.map(one, range(n)))


@contextlib.contextmanager
def running_agent(cmd, d):
    """Starts `cmd` (an nk3-agent serve against the root in `d`, log in d/agent.log), waits until it listens, yields
    the process, and stops it (SIGTERM, then SIGKILL after 10 s) on the way out."""
    log = open(f"{d}/agent.log", "w")
    proc = subprocess.Popen(cmd, stderr=log, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "nk3-agent listening" not in open(f"{d}/agent.log").read():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("agent did not start: " + open(f"{d}/agent.log").read()[-800:])
            time.sleep(0.02)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args):
    d = tempfile.mkdtemp(prefix="rss-by-module-")
    try:
        port = make_root(d)
        binary = os.path.realpath(args.run)
        cmd = [binary, "serve", "--config", f"{d}/agent.json", "--log-level", "info"]
        if args.callgrind:
            # valgrind 3.19 cannot read this toolchain's DWARF: run a copy without debug info (symbols stay).
            copy = f"{d}/nk3-agent"
            sh("objcopy", "--strip-debug", binary, copy)
            cmd = ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={d}/callgrind.out",
                   copy] + cmd[1:]
        with running_agent(cmd, d) as proc:
            time.sleep(args.settle)
            if args.callgrind:
                if args.requests:
                    status_requests(d, port, args.requests, inflight=4)
                time.sleep(1)
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
                return executed(f"{d}/callgrind.out", binary, args)
            results = {"idle": analyse(proc.pid, binary, args.top)}
            report(results["idle"], "idle", args.top)
            if args.requests:
                status_requests(d, port, args.requests)
                time.sleep(1)
                results["after_requests"] = analyse(proc.pid, binary, args.top)
                print()
                report(results["after_requests"], f"after {args.requests} status requests", args.top)
            return results
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print("kept", d, file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", metavar="BINARY", help="start this nk3-agent against a fake node root and sample it")
    g.add_argument("--pid", type=int, help="sample this running process")
    ap.add_argument("--binary", help="with --pid: the process's executable (default /proc/PID/exe)")
    ap.add_argument("--callgrind", action="store_true",
                    help="with --run: run under valgrind callgrind; report the code executed (start, idle, "
                         "--requests), not the resident pages")
    ap.add_argument("--order-file", help="with --callgrind: write the executed functions here, for the linker")
    ap.add_argument("--requests", type=int, default=0, help="with --run: then N status requests, sample again")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds after 'listening' before sampling")
    ap.add_argument("--top", type=int, default=40, help="symbols to list")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    if args.run:
        results = run(args)
    else:
        binary = args.binary or os.readlink(f"/proc/{args.pid}/exe")
        results = {"sample": analyse(args.pid, binary, args.top)}
        report(results["sample"], "sample", args.top)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
