"""Compile a Theano function's C modules on all cores at once.

Theano 1.0.5 builds a function's C code one node at a time: for each node it
writes C++ source, then waits for g++ (about 0.4 s a module; the seminar's
train step needs about 150, most of its cold compile). Here, before Theano's
own serial loop over the nodes (``VM_Linker.make_all``), worker threads make
each node's thunk once, which compiles its module into Theano's cache; the
loop then finds every module there and builds the real thunks as usual.

The workers run Theano's Python code one at a time (``_theano_lock``: its
module cache is not thread-safe) and let go of it only while they wait for
g++, so several compilers run at once while everything else stays serial.
Two workers needing the same module wait for each other instead of
compiling it twice. Scan nodes are left to Theano's loop: their thunk
compiles an inner function, whose own modules are then compiled in parallel
the same way.

``CAPTION_COMPILE_JOBS=1`` switches this off; the default is one job per core.
``import captioning.stack`` installs it unless ``CAPTION_SPEEDUPS=0``.
A prefetch that fails is ignored: Theano's loop makes that thunk again and
reports the error as it always does.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from theano.gof import Constant, cmodule, vm
from theano.scan_module.scan_op import Scan

__all__ = ["install", "compile_jobs", "JOBS_VARIABLE"]

JOBS_VARIABLE = "CAPTION_COMPILE_JOBS"

_theano_lock = threading.Lock()
# .is_worker: this thread holds _theano_lock; .compiling: inside a module
# compile, where waiting for g++ may drop the lock (never inside an import:
# a thread holding an import lock must not let others in).
_thread = threading.local()
_in_flight = {}                  # module hash -> Event set when compiled
_originals = {}


def compile_jobs():
    """Parallel compile jobs: ``$CAPTION_COMPILE_JOBS``, else the core count."""
    value = os.environ.get(JOBS_VARIABLE, "").strip()
    if not value:
        return os.cpu_count() or 1
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise ValueError("%s must be a whole number >= 1 (1 = compile one "
                         "module at a time), not %r" % (JOBS_VARIABLE, value))
    return jobs


def _is_worker():
    return getattr(_thread, "is_worker", False)


def _unlocked(function, *args, **kwargs):
    """Call ``function`` with ``_theano_lock`` released (a worker holds it)."""
    _theano_lock.release()
    try:
        return function(*args, **kwargs)
    finally:
        _theano_lock.acquire()


def _output_subprocess_Popen(command, **params):
    # Theano runs g++ (and nothing slow else) through this function.
    if _is_worker() and getattr(_thread, "compiling", False):
        return _unlocked(_originals["popen"], command, **params)
    return _originals["popen"](command, **params)


def _module_from_key(self, key, lnk=None, keep_lock=False):
    original = _originals["module_from_key"]
    if not _is_worker() or key is None:
        return original(self, key=key, lnk=lnk, keep_lock=keep_lock)
    while True:
        module = self._get_from_key(key)
        if module is not None:
            return module
        module_hash = cmodule.get_module_hash(lnk.get_src_code(), key)
        compiling = _in_flight.get(module_hash)
        if compiling is None:
            break
        _unlocked(compiling.wait)      # another worker is compiling it
    done = _in_flight[module_hash] = threading.Event()
    _thread.compiling = True
    try:
        return original(self, key=key, lnk=lnk, keep_lock=keep_lock)
    finally:
        _thread.compiling = False
        del _in_flight[module_hash]
        done.set()


def _compile_node(node):
    with _theano_lock:
        _thread.is_worker = True
        try:
            # Scratch storage: the thunk is thrown away, its module stays cached.
            storage = {v: [v.data if isinstance(v, Constant) else None]
                       for v in node.inputs + node.outputs}
            computed = {v: [v.owner is None] for v in storage}
            node.op.make_thunk(node, storage, computed, [])
        except Exception:
            pass    # Theano's own loop retries this node and reports the error
        finally:
            _thread.is_worker = False


def _make_all(self, *args, **kwargs):
    jobs = compile_jobs()
    if jobs > 1 and not _is_worker() and self.c_thunks is not False:
        # Modules that compile themselves when first imported (by the
        # first thunk made): here, before any worker could wait on them.
        import theano.gof.cutils  # noqa: F401
        nodes = [node for node in self.schedule(self.fgraph)
                 if not isinstance(node.op, Scan)]
        with ThreadPoolExecutor(max_workers=jobs,
                                thread_name_prefix="theano-compile") as pool:
            list(pool.map(_compile_node, nodes))
    return _originals["make_all"](self, *args, **kwargs)


def install():
    """Patch Theano (once) so ``theano.function`` compiles in parallel."""
    if _originals:
        return
    _originals["popen"] = cmodule.output_subprocess_Popen
    _originals["module_from_key"] = cmodule.ModuleCache.module_from_key
    _originals["make_all"] = vm.VM_Linker.make_all
    cmodule.output_subprocess_Popen = _output_subprocess_Popen
    cmodule.ModuleCache.module_from_key = _module_from_key
    vm.VM_Linker.make_all = _make_all
