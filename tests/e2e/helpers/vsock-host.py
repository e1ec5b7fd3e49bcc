#!/usr/bin/env python3
"""vsock-host.py: host side of kiln's virtio-vsock e2e tests and benchmark (tests/e2e/vsock.bats).

Speaks kiln-vmm's Firecracker-compatible Unix socket (CONNECT <port>\\n -> OK <hostport>\\n) and
listens on UDS_<port> for guest-initiated connections. The guest runs guest/kiln-vsock: an agent
(`listen PORT agent`: the request is run as sh -c, output then "KILN-RC=<n>") and an echo server.
Every subcommand prints key=value lines and exits 0 only if what it checks holds.
"""
import hashlib
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

CHUNK = 256 * 1024


def die(msg):
    print(f"vsock-host: {msg}", flush=True)
    sys.exit(1)


def vsock_cid(uds):
    """The guest CID when uds names a kernel vsock peer ("vsock:CID", QEMU's vhost-vsock in
    bench/vsock.sh), else None (a kiln-vmm Unix socket)."""
    return int(uds[6:]) if uds.startswith("vsock:") else None


def handshake(uds, port, retry_s=0.0):
    """Connect to the VMM's socket and CONNECT to guest port; the socket, or None if refused
    (closed without OK) after retrying for retry_s seconds. With uds "vsock:CID" it connects to
    the guest port over the host kernel's AF_VSOCK instead (no handshake there)."""
    deadline = time.monotonic() + retry_s
    cid = vsock_cid(uds)
    while cid is not None:
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        try:
            s.connect((cid, port))
            return s
        except OSError:
            s.close()
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(uds)
            s.sendall(b"CONNECT %d\n" % port)
            line = b""
            while not line.endswith(b"\n") and len(line) < 64:
                b = s.recv(1)  # one byte at a time: the stream starts right after the newline
                if not b:
                    break
                line += b
            if line.startswith(b"OK ") and line.endswith(b"\n"):
                return s
        except OSError:
            pass
        s.close()
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def agent(uds, port, cmd, retry_s=0.0, on_line=None):
    """Run cmd in the guest; (rc, output without the KILN-RC line). on_line(line) sees each line
    as it arrives."""
    s = handshake(uds, port, retry_s)
    if s is None:
        return None, "agent: handshake refused"
    s.sendall(cmd.encode())
    s.shutdown(socket.SHUT_WR)
    data, pending = b"", b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
        if on_line:
            pending += b
            while b"\n" in pending:
                ln, pending = pending.split(b"\n", 1)
                on_line(ln.decode(errors="replace"))
    s.close()
    text = data.decode(errors="replace")
    lines = text.rstrip("\n").split("\n")
    if not lines or not lines[-1].startswith("KILN-RC="):
        return None, text
    return int(lines[-1][8:]), "\n".join(lines[:-1])


def must_agent(uds, port, cmd, **kw):
    rc, out = agent(uds, port, cmd, **kw)
    if rc != 0:
        die(f"guest command failed (rc={rc}): {cmd}\n{out}")
    return out


def blocks(nbytes, seed):
    """Deterministic pseudo-random data: nbytes in CHUNK pieces (sha256 in counter mode)."""
    block = b"".join(hashlib.sha256(b"%d:%d" % (seed, i)).digest() for i in range(CHUNK // 32))
    sent = 0
    i = 0
    while sent < nbytes:
        n = min(CHUNK, nbytes - sent)
        # vary every chunk cheaply: a counter header makes reordering or loss visible
        chunk = (b"%016x" % i + block)[:n]
        yield chunk
        sent += n
        i += 1


def drain(s, h=None):
    n = 0
    while True:
        b = s.recv(CHUNK)
        if not b:
            return n
        n += len(b)
        if h:
            h.update(b)


def listener(uds, port):
    if vsock_cid(uds) is not None:
        ls = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        ls.bind((socket.VMADDR_CID_ANY, port))
        ls.listen(4096)
        return ls, None
    path = f"{uds}_{port}"
    if os.path.exists(path):
        os.unlink(path)
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(4096)
    return ls, path


def unlink(path):
    if path is not None:
        os.unlink(path)


def mib_s(n, secs):
    return n / (1 << 20) / secs if secs > 0 else 0.0


# ---- subcommands -------------------------------------------------------------------------------


def cmd_agent(uds, port, cmd, retry="0"):
    rc, out = agent(uds, int(port), cmd, retry_s=float(retry))
    print(out)
    return 0 if rc == 0 else (rc if rc is not None else 1)


def cmd_echo(uds, port, msg):
    s = handshake(uds, int(port))
    if s is None:
        die("handshake refused")
    s.sendall(msg.encode())
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    print(f"echo={got.decode(errors='replace')}")
    return 0 if got == msg.encode() else 1


def cmd_h2g(uds, aport, dport, nbytes):
    """Host -> guest bulk: the guest hashes what `kiln-vsock accept` hands it."""
    aport, dport, nbytes = int(aport), int(dport), int(nbytes)
    res = {}
    t = threading.Thread(target=lambda: res.update(
        r=agent(uds, aport, f"kiln-vsock accept {dport} </dev/null | sha256sum")))
    t.start()
    s = handshake(uds, dport, retry_s=20)
    if s is None:
        die("data port refused")
    h = hashlib.sha256()
    t0 = time.monotonic()
    n = 0
    for c in blocks(nbytes, 1):
        s.sendall(c)
        h.update(c)
        n += len(c)
    s.shutdown(socket.SHUT_WR)
    drain(s)
    t.join()
    secs = time.monotonic() - t0
    s.close()
    rc, out = res["r"]
    guest = out.split()[0] if rc == 0 and out else f"<rc={rc} {out}>"
    print(f"bytes={n} secs={secs:.2f} mib_s={mib_s(n, secs):.1f}")
    print(f"host_sha256={h.hexdigest()}")
    print(f"guest_sha256={guest}")
    return 0 if guest == h.hexdigest() else 1


def cmd_g2h(uds, aport, hport, nbytes):
    """Guest -> host bulk: kiln-vsock send to UDS_hport; the guest hashes the same pattern."""
    aport, hport, nbytes = int(aport), int(hport), int(nbytes)
    ls, path = listener(uds, hport)
    res = {}

    def sink():
        c, _ = ls.accept()
        h = hashlib.sha256()
        t0 = time.monotonic()
        n = drain(c, h)
        res.update(n=n, secs=time.monotonic() - t0, sha=h.hexdigest())
        c.close()

    t = threading.Thread(target=sink)
    t.start()
    try:
        out = must_agent(uds, aport, f"kiln-vsock gen {nbytes} 7 | sha256sum && "
                         f"kiln-vsock send {nbytes} 2 {hport} 7")
    finally:
        t.join(timeout=300)
        ls.close()
        unlink(path)
    guest = out.split()[0]
    print(f"bytes={res['n']} secs={res['secs']:.2f} mib_s={mib_s(res['n'], res['secs']):.1f}")
    print(f"host_sha256={res['sha']}")
    print(f"guest_sha256={guest}")
    return 0 if guest == res["sha"] and res["n"] == nbytes else 1


def cmd_g2h_echo(uds, aport, hport, msg):
    """Guest-initiated echo: a host echo listener on UDS_hport, the guest connects to 2:hport."""
    aport, hport = int(aport), int(hport)
    ls, path = listener(uds, hport)

    def serve():
        c, _ = ls.accept()
        while True:
            b = c.recv(65536)
            if not b:
                break
            c.sendall(b)
        c.shutdown(socket.SHUT_WR)
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        rc, out = agent(uds, aport, f"echo '{msg}' | kiln-vsock connect 2 {hport}")
    finally:
        t.join(timeout=30)
        ls.close()
        os.unlink(path)
    print(f"rc={rc} echo={out}")
    return 0 if rc == 0 and out == msg else 1


def cmd_concurrent(uds, port, n, size):
    """n connections open at once to the guest echo port, each with its own payload."""
    port, n, size = int(port), int(n), int(size)
    socks = []
    for i in range(n):
        s = handshake(uds, port)
        if s is None:
            die(f"connection {i} refused ({len(socks)} open)")
        s.setblocking(False)
        socks.append(s)
    payload = [b"".join(blocks(size, 1000 + i)) for i in range(n)]
    payload = [b"conn%04d:" % i + p[9:] for i, p in enumerate(payload)]
    sent = [0] * n
    got = [bytearray() for _ in range(n)]
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
    done = 0
    deadline = time.monotonic() + 120
    while done < n and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=1):
            i, s = key.data, key.fileobj
            if ev & selectors.EVENT_WRITE and sent[i] < size:
                try:
                    sent[i] += s.send(payload[i][sent[i]:sent[i] + 65536])
                except BlockingIOError:
                    pass
                if sent[i] == size:
                    s.shutdown(socket.SHUT_WR)
                    sel.modify(s, selectors.EVENT_READ, i)
            if ev & selectors.EVENT_READ:
                try:
                    b = s.recv(65536)
                except BlockingIOError:
                    continue
                if b:
                    got[i] += b
                else:
                    sel.unregister(s)
                    s.close()
                    done += 1
    bad = [i for i in range(n) if bytes(got[i]) != payload[i]]
    print(f"connections={n} size={size} closed={done} mismatched={len(bad)}")
    return 0 if done == n and not bad else 1


def cmd_stream(uds, port):
    """Child of killmid: echo traffic forever, progress (bytes echoed) on stdout each MiB."""
    s = handshake(uds, int(port), retry_s=5)
    if s is None:
        die("refused")
    stop = False

    def reader():
        n, mark = 0, 1 << 20
        while True:
            b = s.recv(CHUNK)
            if not b:
                return
            n += len(b)
            if n >= mark:
                print(n, flush=True)
                mark += 1 << 20

    threading.Thread(target=reader, daemon=True).start()
    buf = os.urandom(CHUNK)
    while not stop:
        s.sendall(buf)


def echo_transfer(uds, port, nbytes, progress):
    """Send nbytes through the guest echo port while reading it back; (ok, sha_sent, sha_got)."""
    s = handshake(uds, port)
    if s is None:
        return False, "refused", ""
    hs, hr = hashlib.sha256(), hashlib.sha256()

    def writer():
        for c in blocks(nbytes, 2):
            s.sendall(c)
            hs.update(c)
        s.shutdown(socket.SHUT_WR)

    w = threading.Thread(target=writer)
    w.start()
    n = 0
    while True:
        b = s.recv(CHUNK)
        if not b:
            break
        n += len(b)
        progress[0] = n
        hr.update(b)
    w.join()
    s.close()
    return n == nbytes and hs.hexdigest() == hr.hexdigest(), hs.hexdigest(), hr.hexdigest()


def cmd_killmid(uds, port, nbytes):
    """Transfer A (nbytes through echo) runs while client B, also streaming, is SIGKILLed."""
    port, nbytes = int(port), int(nbytes)
    prog, res = [0], {}
    a = threading.Thread(target=lambda: res.update(r=echo_transfer(uds, port, nbytes, prog)))
    b = subprocess.Popen([sys.executable, __file__, "stream", uds, str(port)],
                         stdout=subprocess.PIPE, text=True)
    # A starts once B is streaming (B's first MiB echoed: a fresh interpreter is slow to start
    # in the emulated host, and A could otherwise finish first); B is killed once it has echoed
    # 2 MiB and A is under way.
    t0 = time.monotonic()
    b_bytes, a_started = 0, False
    for line in b.stdout:
        b_bytes = int(line)
        if not a_started:
            a.start()
            a_started = True
        if b_bytes >= 2 << 20 and prog[0] > 0:
            break
        if time.monotonic() - t0 > 120:
            break
    if not a_started:
        a.start()  # B never streamed: A still runs, and the check below fails the test
    a_at_kill = prog[0]
    b.kill()
    b.wait()
    a.join(timeout=300)
    ok, sent, got = res.get("r", (False, "", "timeout"))
    print(f"b_bytes_at_kill={b_bytes} a_bytes_at_kill={a_at_kill} a_bytes={nbytes}")
    print(f"a_sent_sha256={sent}\na_got_sha256={got}")
    # A must have been mid-transfer when B died, and must finish intact.
    if not (0 < a_at_kill < nbytes):
        print("A was not mid-transfer when B was killed")
        return 1
    # and the guest port still takes new connections
    ok2 = cmd_echo(uds, port, "after-kill") == 0
    return 0 if ok and ok2 else 1


def cmd_handshake(uds, data, wait_s="5"):
    """Send raw bytes (Python escapes allowed) and report how the VMM answers."""
    raw = data.encode().decode("unicode_escape").encode("latin-1")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(uds)
    t0 = time.monotonic()
    if raw:
        s.sendall(raw)
    s.settimeout(float(wait_s))
    try:
        b = s.recv(64)
        ms = int((time.monotonic() - t0) * 1000)
        print(f"answer={b.decode(errors='replace').strip() or 'EOF'} ms={ms}")
    except socket.timeout:
        print("answer=none (still open)")
    except ConnectionResetError:
        print(f"answer=RESET ms={int((time.monotonic() - t0) * 1000)}")
    s.close()
    return 0


def vmm_mem(pid, guest_mib):
    """(VmRSS kB, VmHWM kB, RSS kB outside the guest-RAM mapping)."""
    st = {}
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            k, _, v = ln.partition(":")
            st[k] = v.split()[0] if v.split() else "0"
    other, size, rss = 0, 0, 0
    with open(f"/proc/{pid}/smaps") as f:
        for ln in f:
            if ln[0] in "0123456789abcdef" and "-" in ln.split()[0]:
                if size != guest_mib * 1024:
                    other += rss
                size, rss = 0, 0
            elif ln.startswith("Size:"):
                size = int(ln.split()[1])
            elif ln.startswith("Rss:"):
                rss = int(ln.split()[1])
    if size != guest_mib * 1024:
        other += rss
    return int(st["VmRSS"]), int(st["VmHWM"]), other


def cmd_flood(uds, aport, eport, hport, n, write_bytes, pid, guest_mib):
    """The guest opens n connections to UDS_hport and never reads; the host listener accepts,
    writes 64 KiB to each and never reads. While they are held: VMM memory, a new connection
    (refused: table full), an echo connection opened before the flood (must still answer). Then
    the host closes them all; the guest must see every one closed; the agent answers again."""
    aport, eport, hport, n = int(aport), int(eport), int(hport), int(n)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pre = handshake(uds, eport)
    if pre is None:
        die("echo connection before the flood refused")
    ls, path = listener(uds, hport)
    held, stop = [], threading.Event()
    fill = b"\xa5" * 65536

    def acceptor():
        ls.settimeout(0.5)
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.setblocking(False)
            try:
                c.send(fill)
            except OSError:
                pass
            held.append(c)

    acc = threading.Thread(target=acceptor)
    acc.start()
    opened = threading.Event()
    lines = []

    def on_line(ln):
        lines.append(ln)
        if ln.startswith("KILN-FLOOD-OPEN"):
            opened.set()

    res = {}
    ag = threading.Thread(target=lambda: res.update(r=agent(
        uds, aport, f"kiln-vsock flood {n} 2 {hport} {write_bytes}", on_line=on_line)))
    t0 = time.monotonic()
    ag.start()
    rc = 0
    try:
        if not opened.wait(timeout=400):
            die(f"flood did not finish opening: {lines}")
        t_open = time.monotonic() - t0
        time.sleep(1)  # let the guest's writes reach the VMM's buffers
        rss, hwm, other = vmm_mem(pid, int(guest_mib))
        refused = handshake(uds, eport) is None
        pre.setblocking(True)
        pre.settimeout(30)
        pre.sendall(b"ping")
        try:
            pong = pre.recv(16)
        except socket.timeout:
            pong = b"<timeout>"
        print(lines[0])
        print(f"open_secs={t_open:.1f} host_accepted={len(held)}")
        print(f"vmm_rss_kb={rss} vmm_hwm_kb={hwm} vmm_non_guest_rss_kb={other}")
        print(f"new_conn_refused_while_full={'yes' if refused else 'no'}")
        print(f"old_conn_echo={pong.decode(errors='replace')}")
        if pong != b"ping" or not refused:
            rc = 1
    finally:
        stop.set()
        acc.join()
        for c in held:
            c.close()
        ls.close()
        os.unlink(path)
        ag.join(timeout=200)
    frc, fout = res.get("r", (None, "timeout"))
    print(fout.strip().split("\n")[-1] if fout else "")
    print(f"flood_rc={frc}")
    pre.close()
    rc2, out = agent(uds, aport, "echo agent-alive")
    print(f"after={out}")
    return rc if frc == 0 and rc2 == 0 and out == "agent-alive" else 1


def cmd_stop(uds, port):
    s = handshake(uds, int(port))
    if s is None:
        die("stop port refused")
    s.close()
    return 0


def cmd_rtt(uds, port, count, size="64"):
    """Small-message round trips through the guest echo port; median and p99 in microseconds."""
    s = handshake(uds, int(port), retry_s=20)
    if s is None:
        die("refused")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    msg = b"x" * int(size)
    ts = []
    for _ in range(int(count)):
        t0 = time.perf_counter()
        s.sendall(msg)
        got = 0
        while got < len(msg):
            got += len(s.recv(len(msg) - got))
        ts.append((time.perf_counter() - t0) * 1e6)
    ts.sort()
    print(f"rtt_us_median={ts[len(ts) // 2]:.0f} rtt_us_p99={ts[int(len(ts) * 0.99)]:.0f} n={len(ts)}")
    return 0


def cmd_bench_h2g(uds, aport, dport, nbytes):
    """Benchmark host -> guest: nbytes of one repeated 256 KiB block into `kiln-vsock accept`
    (to /dev/null), no hashing on either side; timed from the first byte to the guest's report
    that it read everything. Prints mib_s."""
    aport, dport, nbytes = int(aport), int(dport), int(nbytes)
    res = {}
    t = threading.Thread(target=lambda: res.update(
        r=agent(uds, aport, f"kiln-vsock accept {dport} </dev/null | wc -c")))
    t.start()
    s = handshake(uds, dport, retry_s=20)
    if s is None:
        die("data port refused")
    buf = os.urandom(CHUNK)
    t0 = time.monotonic()
    n = 0
    while n < nbytes:
        c = min(CHUNK, nbytes - n)
        s.sendall(buf[:c])
        n += c
    s.shutdown(socket.SHUT_WR)
    drain(s)
    t.join()
    secs = time.monotonic() - t0
    s.close()
    rc, out = res["r"]
    got = int(out.split()[0]) if rc == 0 and out.split() else -1
    print(f"bytes={n} guest_bytes={got} secs={secs:.3f} mib_s={mib_s(n, secs):.2f}")
    return 0 if got == nbytes else 1


def cmd_bench_g2h(uds, aport, hport, nbytes):
    """Benchmark guest -> host: `kiln-vsock send` nbytes to host port hport; the host only
    counts. Timed on the host from accept to EOF. Prints mib_s."""
    aport, hport, nbytes = int(aport), int(hport), int(nbytes)
    ls, path = listener(uds, hport)
    res = {}

    def sink():
        c, _ = ls.accept()
        t0 = time.monotonic()
        n = drain(c)
        res.update(n=n, secs=time.monotonic() - t0)
        c.close()

    t = threading.Thread(target=sink)
    t.start()
    try:
        must_agent(uds, aport, f"kiln-vsock send {nbytes} 2 {hport} 7")
    finally:
        t.join(timeout=600)
        ls.close()
        unlink(path)
    n, secs = res.get("n", 0), res.get("secs", 0.0)
    print(f"bytes={n} secs={secs:.3f} mib_s={mib_s(n, secs):.2f}")
    return 0 if n == nbytes else 1


CMDS = {"bench-h2g": cmd_bench_h2g, "bench-g2h": cmd_bench_g2h, "agent": cmd_agent, "echo": cmd_echo, "h2g": cmd_h2g, "g2h": cmd_g2h,
        "g2h-echo": cmd_g2h_echo, "concurrent": cmd_concurrent, "stream": cmd_stream,
        "killmid": cmd_killmid, "handshake": cmd_handshake, "flood": cmd_flood,
        "stop": cmd_stop, "rtt": cmd_rtt}

if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if len(sys.argv) < 2 or sys.argv[1] not in CMDS:
        print("usage: vsock-host.py " + "|".join(CMDS) + " ARGS...", file=sys.stderr)
        sys.exit(2)
    sys.exit(CMDS[sys.argv[1]](*sys.argv[2:]))
