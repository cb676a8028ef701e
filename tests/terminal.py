"""goldstream with its output on a pseudo-terminal, the way a person at a shell sees it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time

from testsupport import ROOT
from testsupport.process import cli_env, goldstream_argv


def run_on_terminal(*args: str, size: tuple[int, int] | None = None, tty_stdin: bool = False,
                    **env: str) -> str:
    """Run the CLI with stdout and stderr on a terminal (`size`: rows, columns) until it
    exits; what it wrote, decoded. Fails unless it exits 0."""
    master, slave = pty.openpty()
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    proc = subprocess.Popen(goldstream_argv(*args), stdin=slave if tty_stdin else subprocess.DEVNULL,
                            stdout=slave, stderr=slave, cwd=ROOT, env=cli_env(**env))
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120  # a hang guard, not a timing assertion
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child exited and closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode(errors="replace")
