"""Runs a woolyd (or woolyd-fake) in a private temp dir for one test.

The server listens on a unix socket and on an ephemeral TCP port; it reports
both through --ready-file, so no port is guessed and no sleep is relied on.
Every wait is bounded; the server is always stopped, and a server that died
on its own or did not stop cleanly on SIGTERM is reported as a failure.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15


class HarnessError(Exception):
    pass


def short_tmpdir(prefix):
    # Unix socket paths are limited to 107 bytes: prefer a short base.
    base = os.environ.get("TMPDIR", "/tmp")
    if len(base) > 40 or not os.path.isdir(base):
        base = "/tmp"
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def client_env(client_dir, endpoint, extra=None):
    """Environment for a program that must load Wooly's libcuda.so.1."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    old = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = client_dir + (":" + old if old else "")
    env["WOOLY_SERVER"] = endpoint
    env.setdefault("WOOLY_LOG", "warn")
    if extra:
        env.update(extra)
    return env


class Woolyd:
    """Context manager: a running server; attributes unix, tcp, admin."""

    def __init__(self, server, log_level="warn", env=None, args=None):
        self.server = server
        self.extra_args = list(args or [])
        self.log_level = log_level
        self.extra_env = env or {}
        self.dir = None
        self.proc = None
        self.log = None
        self.unix = None
        self.tcp = None
        self.admin = None
        self.metrics = None
        self.stopped_rc = None

    def __enter__(self):
        self.dir = short_tmpdir("wooly-it-")
        try:
            self._start()
        except BaseException:
            self._kill()
            self._cleanup()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            rc = self.stop()
            if exc_type is None and rc != 0:
                raise HarnessError(
                    "server did not stop cleanly (exit status %s)\n%s" % (rc, self.log_tail()))
        finally:
            self._cleanup()
        return False

    def _start(self):
        ready = os.path.join(self.dir, "ready")
        cmd = [
            self.server,
            "--listen", "unix:" + os.path.join(self.dir, "s.sock"),
            "--listen", "tcp:127.0.0.1:0",
            "--admin", "unix:" + os.path.join(self.dir, "admin.sock"),
            "--log-level", self.log_level,
            "--ready-file", ready,
        ] + self.extra_args
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)  # never run the server on Wooly's own libcuda
        env["WOOLY_SOCKET_DIR"] = self.dir
        env.update(self.extra_env)
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not os.path.exists(ready):
            if self.proc.poll() is not None:
                raise HarnessError("server exited with %s before becoming ready\n%s" %
                                   (self.proc.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                raise HarnessError("server not ready after %ds\n%s" %
                                   (READY_TIMEOUT_S, self.log_tail()))
            time.sleep(0.02)
        with open(ready) as f:
            for line in f:
                kind, _, addr = line.strip().partition(" ")
                if kind == "listen" and addr.startswith("tcp:"):
                    self.tcp = addr
                elif kind == "listen":
                    self.unix = addr if addr.startswith("unix:") else "unix:" + addr
                elif kind == "admin":
                    self.admin = addr
                elif kind == "metrics":
                    self.metrics = addr
        if not self.unix or not self.tcp:
            raise HarnessError("ready file lacks the unix or tcp endpoint:\n" + open(ready).read())

    def endpoint(self, transport):
        return self.unix if transport == "unix" else self.tcp

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, bounded wait, then SIGKILL. Returns the exit status."""
        if self.proc is None:
            return 0
        if self.stopped_rc is not None:
            return self.stopped_rc
        if self.proc.poll() is not None:
            # It died on its own: always a failure, whatever the status.
            self.stopped_rc = self.proc.returncode if self.proc.returncode != 0 else "exited early"
            return self.stopped_rc
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.stopped_rc = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._kill()
            self.stopped_rc = "hung on SIGTERM (killed)"
        return self.stopped_rc

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass

    def log_tail(self, lines=40):
        if self.log is not None:
            self.log.flush()
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                text = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no server log)"
        return "--- server log (last %d lines) ---\n%s" % (lines, "\n".join(text[-lines:]))

    def _cleanup(self):
        self._kill()
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.dir and os.environ.get("WOOLY_KEEP_TEST_DIRS") is None:
            shutil.rmtree(self.dir, ignore_errors=True)


def run_program(cmd, env, timeout_s):
    """Runs cmd; returns (returncode, combined output). Timeouts return 124."""
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout_s)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        return 124, out + "\n(timed out after %ds)" % timeout_s
