#!/usr/bin/env python3
"""Bad input: raw clients speaking broken wire protocol must get an error
reply or be dropped, while the server keeps serving a well-behaved program.

  bad_input.py --server woolyd-fake --client-dir build/client \
      --program build/tests/programs/vector_add --image test_kernels.fake

Assertions are about outcomes (a reply or a closed connection, the good
program passing, the server alive), never about timing; each wait is only
bounded so that a hung server fails the test instead of hanging it.
"""

import argparse
import mmap
import os
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MAGIC = 0x594C4F57
REPLY_BIT = 0x8000
PROTOCOL_VERSION = 1
OP_HELLO = 1
OP_MEM_ALLOC = 10
OP_MEM_FREE = 11
OP_MEMCPY_HTOD = 14
CUDA_ERROR_NOT_SUPPORTED = 801
WAIT_S = 20

failures = []


def check(cond, what):
    print("%s: %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        failures.append(what)


def header(op, length, seq=1, magic=MAGIC):
    return struct.pack("<IHHII", magic, op, 0, length, seq)


def frame(op, payload, seq=1):
    return header(op, len(payload), seq) + payload


def hello_payload(version=PROTOCOL_VERSION, name=b"bad-input-test"):
    return struct.pack("<IIiQ", version, os.getpid(), 0, len(name)) + name


def connect(endpoint):
    if endpoint.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(WAIT_S)
        s.connect(endpoint[len("unix:"):])
    else:
        host, port = endpoint[len("tcp:"):].rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=WAIT_S)
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(s):
    """Returns (op, seq, payload), or None when the server closed the connection."""
    h = recv_exact(s, 16)
    if h is None:
        return None
    magic, op, _flags, length, seq = struct.unpack("<IHHII", h)
    if magic != MAGIC:
        raise AssertionError("reply with bad magic %#x" % magic)
    payload = recv_exact(s, length)
    if payload is None:
        return None
    return op, seq, payload


def result_of(payload):
    return struct.unpack_from("<i", payload)[0] if len(payload) >= 4 else None


def error_or_drop(s):
    """True when the server answers with an error result or closes the socket."""
    try:
        while True:
            f = read_frame(s)
            if f is None:
                return True  # dropped
            r = result_of(f[2])
            if r not in (None, 0):
                return True  # an error reply
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def hello(s):
    s.sendall(frame(OP_HELLO, hello_payload()))
    f = read_frame(s)
    return f is not None and f[0] == OP_HELLO | REPLY_BIT and result_of(f[2]) == 0


def scenario_garbage(endpoint):
    s = connect(endpoint)
    s.sendall(b"\x00\x01garbage, not a wooly frame" * 8)
    check(error_or_drop(s), "garbage bytes are refused (%s)" % endpoint.split(":")[0])
    s.close()


def scenario_oversized(endpoint):
    s = connect(endpoint)
    s.sendall(header(OP_HELLO, 0xFFFFFFFF))
    check(error_or_drop(s), "a frame announcing 4 GiB is refused")
    s.close()


def scenario_wrong_version(endpoint):
    s = connect(endpoint)
    s.sendall(frame(OP_HELLO, hello_payload(version=PROTOCOL_VERSION + 1000)))
    f = read_frame(s)
    ok = f is not None and result_of(f[2]) == CUDA_ERROR_NOT_SUPPORTED
    check(ok, "a wrong protocol version gets CUDA_ERROR_NOT_SUPPORTED")
    s.close()


def scenario_command_before_hello(endpoint):
    s = connect(endpoint)
    s.sendall(frame(OP_MEM_ALLOC, struct.pack("<Q", 4096)))
    check(error_or_drop(s), "a command before hello is refused")
    s.close()


def scenario_truncated_payload(endpoint):
    s = connect(endpoint)
    check(hello(s), "hello accepted")
    s.sendall(frame(OP_MEM_ALLOC, b"\x01\x02\x03", seq=2))  # needs a u64
    check(error_or_drop(s), "a truncated MemAlloc payload is refused")
    s.close()


def scenario_unknown_op(endpoint):
    s = connect(endpoint)
    check(hello(s), "hello accepted")
    s.sendall(frame(0x7777, b"\x00" * 8, seq=2))
    check(error_or_drop(s), "an unknown op is refused")
    s.close()


def scenario_foreign_pointer(endpoint):
    # A pointer this client never allocated must not be freed or written.
    s = connect(endpoint)
    check(hello(s), "hello accepted")
    s.sendall(frame(OP_MEM_FREE, struct.pack("<Q", 0x7F0000000000), seq=2))
    f = read_frame(s)
    check(f is not None and result_of(f[2]) != 0, "freeing a pointer never allocated fails")
    s.close()


def scenario_disconnect_mid_command(endpoint):
    # Allocate, then announce a 64 MiB copy into it, send 1 MiB and vanish.
    s = connect(endpoint)
    check(hello(s), "hello accepted")
    s.sendall(frame(OP_MEM_ALLOC, struct.pack("<Q", 64 << 20), seq=2))
    f = read_frame(s)
    check(f is not None and result_of(f[2]) == 0, "MemAlloc before the disconnect")
    if f is None or result_of(f[2]) != 0:
        s.close()
        return
    dptr = struct.unpack_from("<Q", f[2], 4)[0]
    body = struct.pack("<QQB", dptr, 0, 0)
    s.sendall(header(OP_MEMCPY_HTOD, len(body) + (64 << 20), seq=3) + body)
    s.sendall(b"\xab" * (1 << 20))
    s.close()


def scenario_connection_churn(endpoint):
    for _ in range(50):
        connect(endpoint).close()
    s = connect(endpoint)
    check(hello(s), "hello still accepted after 50 empty connections")
    s.close()


# --- the shared-memory channel (proto/channel.h) ------------------------------

OP_SHM_ATTACH = 3
OP_MEM_GET_INFO = 12
OP_HOST_SHM_REGISTER = 21
SHM_MAGIC = 0x4D48534F
RING = 4096
C2S_CTL = 64  # ShmChannelHeader.c2s; head at +0, tail at +64


def shm_attach(s, valid=True):
    """Sends kShmAttach with a memfd; returns (result, mapping)."""
    total = 4096 + 2 * RING
    fd = os.memfd_create("bad-input-ring")
    os.ftruncate(fd, total)
    m = mmap.mmap(fd, total)
    if valid:
        struct.pack_into("<IIQQQQ", m, 0, SHM_MAGIC, 1, RING, total, 4096, 4096 + RING)
    s.sendall(frame(OP_SHM_ATTACH, b"", seq=7))
    socket.send_fds(s, [b"F"], [fd])
    os.close(fd)
    f = read_frame(s)
    return (None if f is None else result_of(f[2])), m


def scenario_shm_bad_header(endpoint):
    s = connect(endpoint)
    check(hello(s), "hello accepted")
    r, m = shm_attach(s, valid=False)
    check(r not in (None, 0), "a shared-memory channel with a bad header is declined")
    s.sendall(frame(OP_MEM_GET_INFO, b"", seq=8))
    f = read_frame(s)
    check(f is not None and result_of(f[2]) == 0, "the session goes on over the socket")
    m.close()
    s.close()


def attached(endpoint):
    """A client switched to a (well-formed) shared-memory channel."""
    s = connect(endpoint)
    check(hello(s), "hello accepted")
    r, m = shm_attach(s)
    check(r == 0, "a well-formed shared-memory channel is accepted")
    return s, m


def scenario_shm_nonsense_indices(endpoint):
    s, m = attached(endpoint)
    # The client claims 1 TiB of commands in a 4 KiB ring: woolyd must drop
    # it (it notices within its liveness interval even without a doorbell).
    struct.pack_into("<Q", m, C2S_CTL, 1 << 40)
    check(error_or_drop(s), "nonsense ring indices get the client dropped")
    m.close()
    s.close()


def scenario_shm_garbage_frame(endpoint):
    s, m = attached(endpoint)
    garbage = b"\xde\xad\xbe\xef" * 8
    m[4096:4096 + len(garbage)] = garbage
    struct.pack_into("<Q", m, C2S_CTL, len(garbage))
    check(error_or_drop(s), "a garbage frame in the ring gets the client dropped")
    m.close()
    s.close()


def scenario_shm_unsealed_register(endpoint):
    s = connect(endpoint)
    check(hello(s), "hello accepted")
    fd = os.memfd_create("bad-input-pinned")  # no seals: could shrink under woolyd
    os.ftruncate(fd, 1 << 16)
    m = mmap.mmap(fd, 1 << 16)
    addr = 0x7F0000000000  # any page-aligned address
    s.sendall(frame(OP_HOST_SHM_REGISTER, struct.pack("<QQ", addr, 1 << 16), seq=9))
    socket.send_fds(s, [b"F"], [fd])
    os.close(fd)
    f = read_frame(s)
    check(f is not None and result_of(f[2]) not in (None, 0),
          "pinned memory that is not sealed against shrinking is refused")
    m.close()
    s.close()


def run_good(server, args, transport, label):
    rc, out = harness.run_program(
        [args.program, args.image],
        harness.client_env(args.client_dir, server.endpoint(transport)), args.timeout)
    name = os.path.basename(args.program)
    ok = rc == 0 and ("PASS " + name) in out.splitlines()
    check(ok, "%s (%s) passes %s" % (name, transport, label))
    if not ok:
        print(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--client-dir", required=True)
    ap.add_argument("--program", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--timeout", type=int, default=300)
    args = ap.parse_args()

    try:
        with harness.Woolyd(args.server) as server:
            for endpoint in (server.unix, server.tcp):
                scenario_garbage(endpoint)
            scenario_oversized(server.unix)
            scenario_wrong_version(server.tcp)
            scenario_command_before_hello(server.unix)
            scenario_truncated_payload(server.unix)
            scenario_unknown_op(server.tcp)
            scenario_foreign_pointer(server.unix)
            scenario_disconnect_mid_command(server.unix)
            scenario_connection_churn(server.tcp)
            scenario_shm_bad_header(server.unix)
            scenario_shm_nonsense_indices(server.unix)
            scenario_shm_garbage_frame(server.unix)
            scenario_shm_unsealed_register(server.unix)

            # A client stalled in the middle of a frame must not block others.
            stalled = connect(server.unix)
            stalled.sendall(header(OP_HELLO, 100) + b"\x01\x00")
            stalled_tcp = connect(server.tcp)
            check(hello(stalled_tcp), "hello accepted")
            stalled_tcp.sendall(header(OP_MEMCPY_HTOD, 1 << 20, seq=2) + b"\x00" * 100)
            run_good(server, args, "unix", "while two clients stall mid-frame")
            run_good(server, args, "tcp", "while two clients stall mid-frame")
            stalled.close()
            stalled_tcp.close()

            # Garbage arriving while a good program runs.
            t = threading.Thread(target=lambda: [scenario_garbage(server.unix) for _ in range(5)])
            t.start()
            run_good(server, args, "unix", "alongside garbage clients")
            t.join(WAIT_S)

            check(server.alive(), "the server is still running")
            if failures:
                print(server.log_tail())
    except harness.HarnessError as e:
        failures.append(str(e))
        print("FAIL: %s" % e)

    if failures:
        print("FAIL bad_input: %d check(s) failed" % len(failures))
        return 1
    print("PASS bad_input")
    return 0


if __name__ == "__main__":
    sys.exit(main())
