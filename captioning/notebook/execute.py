"""Run a notebook to its end within time limits, whatever its cells do.

:class:`LimitedClient` is nbclient's ``NotebookClient`` with errors allowed
(a cell that raises does not stop the run), one limit per cell (nbclient's
``interrupt_on_timeout``: an endless loop is interrupted) and one for the
whole run, after which the cells left are not run; a kernel that ignores
interrupts is killed. The grader (``captioning.notebook.grade``) uses it.
"""
import os
import signal
import threading
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

KILL_GRACE = 30             # seconds after the whole run's limit before a kernel still there is killed


class LimitedClient(NotebookClient):
    """Runs every cell (errors do not stop it) within two limits.

    A cell that runs longer than ``cell_timeout`` is interrupted (nbclient's
    ``interrupt_on_timeout``) and gets a ``CellTimeoutError``; the cell
    running when the whole run's ``timeout`` is up is stopped the same way,
    the cells left are not run, and the kernel is shut down. Should it still
    be there ``KILL_GRACE`` seconds later, it is killed.
    """

    def __init__(self, nb, cell_timeout, timeout, **kw):
        super().__init__(nb, allow_errors=True, interrupt_on_timeout=True, timeout_func=self._cell_limit,
                         error_on_timeout={"ename": "CellTimeoutError", "evalue": "the cell did not finish "
                                           "within its time limit and was interrupted", "traceback": []},
                         **kw)
        self.cell_timeout, self.timeout_total = cell_timeout, timeout
        self.deadline = time.monotonic() + timeout
        self.timed_out, self.not_run = set(), set()
        self.killed = False
        self.running = None

    def _cell_limit(self, cell):
        return max(1, int(min(self.cell_timeout, self.deadline - time.monotonic()) + 0.5))

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type == "code" and time.monotonic() >= self.deadline:
            self.not_run.add(cell_index)
            return cell
        self.running = cell_index
        cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        if cell_index in self.timed_out:   # say why, keeping the traceback of where it was stopped
            stopped = [o for o in cell.outputs if o.output_type == "error"]
            cell.outputs = [o for o in cell.outputs if o.output_type != "error"] + [nbformat.v4.new_output(
                "error", **dict(self.error_on_timeout, traceback=stopped[0].traceback if stopped else []))]
        return cell

    async def _async_handle_timeout(self, timeout, cell=None):
        self.timed_out.add(self.running)
        return await super()._async_handle_timeout(timeout, cell)

    def _kill(self):
        """Kill the kernel's process group (never our own)."""
        provisioner = getattr(self.km, "provisioner", None)
        pid = getattr(provisioner, "pid", None)
        if not pid:
            return
        self.killed = True
        try:
            pgid = os.getpgid(pid)
            if pgid != os.getpgid(0):
                os.killpg(pgid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def run(self, **kernel_kw):
        """Execute; returns None, or a line saying why the run stopped early."""
        watchdog = threading.Timer(max(0.0, self.deadline - time.monotonic()) + KILL_GRACE, self._kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            self.execute(**kernel_kw)
        except DeadKernelError:
            for index in range((self.running or 0) + 1, len(self.nb.cells)):
                self.not_run.add(index)
            if self.killed:
                return "the run exceeded its time limit; the kernel did not stop and was killed in cell %d" % (
                    self.running + 1)
            return "the kernel died in cell %d (the cells after it were not run)" % ((self.running or 0) + 1)
        finally:
            watchdog.cancel()
        return None
