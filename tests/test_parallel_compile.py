"""Theano's C modules compile in parallel, each once, into working functions.

Each check runs in a fresh process with an empty Theano compiledir, so every
module really is compiled: a function with 19 elementwise nodes (9 distinct
modules, each needed twice) and a dot, compiled with CAPTION_COMPILE_JOBS=1
and =2. Its outputs are checked against numpy; the compiler calls are
counted (how many, and how many ran at once).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from captioning.stack.speed import parallel_compile

SCRIPT = textwrap.dedent("""
    import json, threading
    import captioning.stack
    from captioning.stack.speed import parallel_compile
    import numpy as np, theano, theano.tensor as T

    lock = threading.Lock()
    count = {"running": 0, "peak": 0, "calls": 0}
    compiler = parallel_compile._originals["popen"]

    def counting_compiler(command, **params):
        with lock:
            count["calls"] += 1
            count["running"] += 1
            count["peak"] = max(count["peak"], count["running"])
        try:
            return compiler(command, **params)
        finally:
            with lock:
                count["running"] -= 1

    parallel_compile._originals["popen"] = counting_compiler

    x, y = T.vectors("x", "y")
    ops = [T.exp, T.log, T.sin, T.cos, T.tanh, T.sqrt, T.log1p, T.expm1, T.arctan]
    references = [np.exp, np.log, np.sin, np.cos, np.tanh, np.sqrt, np.log1p,
                  np.expm1, np.arctan]
    # exp(x) and exp(y) are two nodes needing the same module
    fn = theano.function([x, y], [op(v) for v in (x, y) for op in ops] + [T.dot(x, y)])
    a = np.linspace(0.5, 2.0, 7).astype("float32")
    b = np.linspace(1.0, 3.0, 7).astype("float32")
    got = fn(a, b)
    want = [f(v) for v in (a, b) for f in references] + [np.dot(a, b)]
    error = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want))
    calls, peak = count["calls"], count["peak"]

    class BrokenC(theano.Op):
        __props__ = ()
        def make_node(self, v):
            return theano.Apply(self, [v], [v.type()])
        def perform(self, node, inputs, outputs):
            outputs[0][0] = inputs[0]
        def c_code(self, node, name, inputs, outputs, sub):
            return "this is not C++;"
        def c_code_cache_version(self):
            return (1,)

    try:
        theano.function([x], BrokenC()(x) * 2)
        failure = None
    except Exception as e:
        failure = " ".join(str(a) for a in e.args)

    print("RESULT " + json.dumps({"max_error": error, "peak": peak,
                                  "calls": calls, "failure": failure}))
""")


def compile_cold(tmp_path, jobs):
    env = dict(os.environ, CAPTION_COMPILE_JOBS=str(jobs),
               THEANO_FLAGS="base_compiledir=%s" % (tmp_path / ("jobs%d" % jobs)))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, text=True,
                         capture_output=True)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line.split(" ", 1)[1])


@pytest.fixture(scope="module")
def serial_and_parallel(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("compiledirs")
    return compile_cold(tmp_path, 1), compile_cold(tmp_path, 2)


@pytest.mark.slow
def test_parallel_compile_runs_compilers_at_once(serial_and_parallel):
    serial, parallel = serial_and_parallel
    assert serial["peak"] == 1
    assert parallel["peak"] >= 2


@pytest.mark.slow
def test_each_module_is_compiled_once(serial_and_parallel):
    serial, parallel = serial_and_parallel
    # 9 elementwise modules and the dot's, at least (and Theano's helpers
    # compiled on first use in an empty compiledir)
    assert serial["calls"] >= 10
    assert parallel["calls"] == serial["calls"]


@pytest.mark.slow
def test_compiled_functions_compute_what_numpy_does(serial_and_parallel):
    for result in serial_and_parallel:
        assert result["max_error"] < 1e-5


@pytest.mark.slow
def test_compile_errors_are_reported_as_theano_reports_them(serial_and_parallel):
    serial, parallel = serial_and_parallel
    for result in (serial, parallel):
        assert "The following error happened while compiling the node" in result["failure"]
        assert "BrokenC" in result["failure"]


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_job_count_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(parallel_compile.JOBS_VARIABLE, value)
    with pytest.raises(ValueError, match="CAPTION_COMPILE_JOBS"):
        parallel_compile.compile_jobs()


@pytest.mark.parametrize("cores, jobs", [(7, 7), (1, 1), (None, 1)])
def test_default_is_one_job_per_core(monkeypatch, cores, jobs):
    # os.cpu_count() is None where the count cannot be determined
    monkeypatch.delenv(parallel_compile.JOBS_VARIABLE, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert parallel_compile.compile_jobs() == jobs

