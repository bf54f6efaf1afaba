"""What a background job's process runs (gen.jobs.CHILD): a watch on its worker, then gen's CLI.

The worker holds the only writing end of a pipe whose reading end this process gets (its file
descriptor is argv[1]). The worker never writes: a read returns only when that end is closed,
by the worker, or by the kernel when the worker dies however it dies (kill -9 included). Then
this process kills its whole process group (itself and all it started) at once.

Only the standard library is imported before the watch starts, so that it runs within moments
of the start; gen's CLI (torch and all) is imported after it.
"""

import os
import signal
import sys
import threading


def _end_with_worker(watched: int) -> None:
    while os.read(watched, 1):  # nothing is ever written: this returns b"" once the worker has ended
        pass
    os.killpg(0, signal.SIGKILL)  # the job is queued again; training resumes from its last checkpoint


def main() -> None:
    watched = int(sys.argv.pop(1))
    threading.Thread(target=_end_with_worker, args=(watched,), name="end-with-worker", daemon=True).start()
    from gen.cli import main as gen

    gen()
