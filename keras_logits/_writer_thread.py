"""One background thread that runs a logger's file writes in order, so training does not wait on the disk.

Writes are closures queued by the training thread; they run one at a time,
in the order queued, each an atomic write of its own. The thread is a daemon,
and an `atexit` hook drains the queue before the interpreter exits (daemon
threads still run during `atexit`), so a script that ends, or dies of an
exception, leaves every queued file written. A write that fails is re-raised
in the training thread at the next `submit`, `wait` or `close`; the writes
queued after it are dropped (they would be out of order with the failed one).
"""

from __future__ import annotations

import atexit
import queue
import threading
from typing import Callable, Optional


class WriterThread:
    """Runs queued writes on one daemon thread; `wait()` returns once every write queued so far is done.

    Example:

    >>> lines = []
    >>> writer = WriterThread()
    >>> for epoch in range(3):
    ...     writer.submit(lambda epoch=epoch: lines.append(epoch))
    >>> writer.close()
    >>> lines
    [0, 1, 2]
    """

    def __init__(self, name: str = "keras-logits-writer"):
        self._queue: queue.Queue = queue.Queue()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def submit(self, write: Callable[[], object]) -> None:
        """Queues `write()`; raises the error of an earlier write that failed."""
        self._raise_failure()
        self._queue.put(write)

    def wait(self) -> None:
        """Blocks until every write queued so far has run; raises the error of one that failed."""
        self._queue.join()
        self._raise_failure()

    @property
    def pending(self) -> int:
        """How many queued writes have not finished."""
        return self._queue.unfinished_tasks

    def close(self) -> None:
        """Runs what is queued, stops the thread; raises the error of a write that failed. Idempotent."""
        atexit.unregister(self.close)
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise_failure()

    def _raise_failure(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _run(self) -> None:
        while True:
            write = self._queue.get()
            try:
                if write is None:
                    return
                if self._error is None:
                    write()
            except BaseException as error:  # handed to the training thread, which decides
                self._error = error
            finally:
                self._queue.task_done()
