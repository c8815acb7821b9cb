"""Start a private vkvd for tests and demos (a real daemon process).

    with vkv.daemon.Vkvd("/path/to/vkvd") as d:
        c = vkv.Client(rundir=d.rundir, ns="m")

The daemon gets its own temporary runtime and state directories, is waited
for until its socket exists, and is stopped with SIGTERM (then SIGKILL).
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time


class Vkvd:
    def __init__(self, binary, extra=(), capacity="64M", backend="host"):
        self.binary = binary
        self.extra = list(extra)
        self.capacity = capacity
        self.backend = backend  # "host" or "cuda"
        self.proc = None
        self.dir = None

    def start(self, timeout=10.0):
        self.dir = tempfile.mkdtemp(prefix="vkvd-py-")
        self.rundir = os.path.join(self.dir, "run")
        self.statedir = os.path.join(self.dir, "state")
        self.logpath = os.path.join(self.dir, "vkvd.log")
        args = [self.binary, "--rundir", self.rundir, "--state-dir", self.statedir,
                "--capacity", self.capacity, "--slab-size", self.capacity,
                "--backend", self.backend] + self.extra
        self._log = open(self.logpath, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        sock = os.path.join(self.rundir, "vkvd.sock")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vkvd exited with {self.proc.returncode}: {self.log()}")
            if os.path.exists(sock):
                time.sleep(0.05)
                return self
            time.sleep(0.02)
        raise RuntimeError("vkvd did not come up: " + self.log())

    def log(self):
        try:
            with open(self.logpath, "r", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
