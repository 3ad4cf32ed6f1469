"""``CAPTION_SPEEDUPS=0`` leaves Theano exactly as Theano alone is.

Three fresh processes (import order matters, so never this one) describe
the Theano they see, without compiling anything:

* *theano*: Theano imported without captioning, with the THEANO_FLAGS that
  ``captioning`` gave Theano in the *off* process and the same modules
  imported (the reference);
* *off*: ``import captioning.stack`` (and ``captioning.model``) with
  ``CAPTION_SPEEDUPS=0``;
* *on*: the same with the default.

A description lists every function, class and object that Theano's modules
(and their classes) hold, by the module, qualified name and source line of
its definition (so a patch made with ``functools.wraps`` still shows), every
entry of Theano's optimizer database (``optdb`` and the databases inside
it), and every Theano config value. Off must equal the reference and hold
nothing defined in ``captioning``; on must show each speed-up, so the
comparison sees them.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Three fresh processes that import Theano.
pytestmark = pytest.mark.slow

DESCRIBE = textwrap.dedent('''
    import functools, json, os, sys, types

    def origin(value):
        """(kind, module, qualified name, source) of a Theano attribute."""
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            value = value.fget
        if isinstance(value, types.FunctionType):
            code = value.__code__
            return ("function", value.__module__, value.__qualname__,
                    "%s:%d" % (code.co_filename, code.co_firstlineno))
        if isinstance(value, type):
            return ("class", value.__module__, value.__qualname__, "")
        kind = type(value)
        return ("object", kind.__module__, kind.__qualname__, "")

    def theano_modules():
        import theano
        package = os.path.dirname(theano.__file__) + os.sep
        return sorted(name for name, m in list(sys.modules.items())
                      if name.startswith("theano") and m is not None
                      and (getattr(m, "__file__", None) or "").startswith(package))

    def attributes(module_names):
        found = {}
        for name in module_names:
            for attr, value in list(vars(sys.modules[name]).items()):
                if isinstance(value, types.ModuleType):
                    continue
                found["%s.%s" % (name, attr)] = origin(value)
                if isinstance(value, type) and value.__module__.startswith("theano"):
                    for member, v in list(vars(value).items()):
                        found["%s.%s.%s" % (name, attr, member)] = origin(v)
        return found

    def optimizers():
        from theano.compile import optdb
        from theano.gof.optdb import DB
        entries, seen = set(), set()

        def walk(db, path):
            for key, objects in list(db.__db__.items()):
                for obj in objects:
                    fn = getattr(obj, "fn", None)
                    entries.add("%s/%s: %s.%s %s" % (
                        path, key, type(obj).__module__, type(obj).__qualname__,
                        "%s.%s" % (fn.__module__, fn.__qualname__) if callable(fn) else ""))
                    if isinstance(obj, DB) and id(obj) not in seen:
                        seen.add(id(obj))
                        walk(obj, path + "/" + key)
            for key, position in getattr(db, "__position__", {}).items():
                entries.add("%s/%s at %r" % (path, key, position))

        walk(optdb, "optdb")
        return sorted(entries)

    def config():
        import theano
        from theano import configparser
        values = {}
        for param in configparser._config_var_list:
            try:
                value = functools.reduce(getattr, param.fullname.split("."), theano.config)
            except Exception as error:
                value = "error: %s" % type(error).__name__
            values[param.fullname] = str(value)
        return values

    who, out = sys.argv[1], sys.argv[2]
    report = {}
    if who == "theano":
        # Theano alone, set up as theano_setup sets up every process: the
        # flags the off process used and the pure-Python scan loop.
        sys.modules["theano.scan_module.scan_perform_ext"] = None
        import importlib, theano
        modules = json.loads(sys.argv[3])
        for name in modules:
            importlib.import_module(name)
    else:
        import captioning.stack, theano
        from theano import configparser
        from captioning.model import CaptionModel
        modules = theano_modules()
        report["theano_flags"] = configparser.THEANO_FLAGS
    report["modules"] = modules
    report["attributes"] = attributes(modules)
    report["optimizers"] = optimizers()
    report["config"] = config()
    if who != "theano":
        # After the description: train_mode() fills Theano's default-mode cache.
        report["fused_loss"] = CaptionModel.fused_loss
        report["allow_gc"] = CaptionModel.train_mode().linker.allow_gc
        from captioning.cnn.encode import cnn_mode
        report["cnn_allow_gc"] = cnn_mode().linker.allow_gc
    with open(out, "w") as f:
        json.dump(report, f)
''')


def describe(tmp_path, who, theano_flags=None, speedups=None, modules=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("THEANO_FLAGS", "CAPTION_SPEEDUPS")}
    if theano_flags is not None:
        env["THEANO_FLAGS"] = theano_flags
    if speedups is not None:
        env["CAPTION_SPEEDUPS"] = speedups
    out = tmp_path / ("%s.json" % who)
    args = [sys.executable, "-c", DESCRIBE, who, str(out)]
    if modules is not None:
        args.append(json.dumps(modules))
    result = subprocess.run(args, env=env, cwd=ROOT, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("switch")
    off = describe(tmp, "off", speedups="0")
    on = describe(tmp, "on")
    theano_alone = describe(tmp, "theano", theano_flags=off["theano_flags"],
                            modules=off["modules"])
    return theano_alone, off, on


def flags(string):
    return dict(item.split("=", 1) for item in string.split(","))


def from_captioning(report):
    return sorted(name for name, (_, module, _, _) in report["attributes"].items()
                  if module.startswith("captioning"))


def test_off_sets_only_what_theano_needs_to_run_here(described):
    _, off, on = described
    # floatX and device as the seminar has them, a compiledir of its own, and
    # blas.ldflags set (empty: BLAS through numpy's C-API), without which
    # Theano 1.0.5 crashes on import with numpy >= 1.22.
    assert set(flags(off["theano_flags"])) == {"floatX", "blas.ldflags",
                                               "base_compiledir", "device"}
    assert flags(off["theano_flags"])["blas.ldflags"] == ""
    on_flags = flags(on["theano_flags"])
    assert on_flags["blas.ldflags"] and on_flags["gcc.cxxflags"]
    assert on_flags["optimizer_excluding"] == "local_dot22_to_dot22scalar"


def test_off_leaves_theanos_functions_classes_and_objects(described):
    theano_alone, off, _ = described
    assert from_captioning(off) == []
    assert theano_alone["modules"] == off["modules"]
    differ = sorted(name for name, value in theano_alone["attributes"].items()
                    if off["attributes"].get(name) != value)
    assert differ == [], differ[:20]


def test_off_registers_no_optimizer(described):
    theano_alone, off, _ = described
    added = sorted(set(off["optimizers"]) - set(theano_alone["optimizers"]))
    removed = sorted(set(theano_alone["optimizers"]) - set(off["optimizers"]))
    assert (added, removed) == ([], [])


def test_off_leaves_theanos_config(described):
    theano_alone, off, _ = described
    differ = {k: (v, off["config"].get(k)) for k, v in theano_alone["config"].items()
              if off["config"].get(k) != v}
    assert differ == {}
    assert off["config"]["lib.amdlibm"] == "False"
    assert off["config"]["optimizer_excluding"] == ""
    assert off["config"]["gcc.cxxflags"] == ""


def test_off_model_uses_the_plain_loss_and_theanos_allow_gc(described):
    theano_alone, off, _ = described
    assert off["fused_loss"] is False
    assert off["allow_gc"] is True and theano_alone["config"]["allow_gc"] == "True"
    assert off["cnn_allow_gc"] is True


def test_on_shows_each_speed_up(described):
    # The same descriptions see every speed-up when it is on: the off
    # checks above would catch any one of them left applied.
    theano_alone, _, on = described
    assert from_captioning(on) == [
        "theano.gof.cmodule.ModuleCache.module_from_key",
        "theano.gof.cmodule.output_subprocess_Popen",
        "theano.gof.vm.VM_Linker.make_all",
        "theano.scan_module.scan_op.Scan.execute",
    ]
    added = {entry.split(":")[0].split(" at ")[0]
             for entry in set(on["optimizers"]) - set(theano_alone["optimizers"])}
    for name in ("captioning_sum0_to_gemv", "captioning_vector_xent",
                 "captioning_simd_elemwise"):
        assert "optdb/" + name in added
    assert on["config"]["optimizer_excluding"] == "local_dot22_to_dot22scalar"
    assert on["config"]["gcc.cxxflags"] != ""
    assert on["fused_loss"] is True and on["allow_gc"] is False
    assert on["cnn_allow_gc"] is False


def test_the_environment_keeps_the_users_theano_flags():
    # captioning gives Theano its merged flags but leaves THEANO_FLAGS as the
    # user set it: a child process (say one with CAPTION_SPEEDUPS=0) merges
    # its own defaults instead of inheriting the speed flags.
    code = ("import os, captioning.stack, theano; "
            "print(os.environ.get('THEANO_FLAGS'), bool(theano.config.gcc.cxxflags))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("THEANO_FLAGS", "CAPTION_SPEEDUPS")}
    for user, expected in ((None, "None True"), ("floatX=float32", "floatX=float32 True")):
        if user is not None:
            env["THEANO_FLAGS"] = user
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                             text=True, capture_output=True)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == expected


def test_the_switch_takes_1_or_0_and_nothing_else():
    from captioning.stack.theano_setup import SpeedSwitchError, speedups_enabled
    for value, on in (("", True), ("1", True), (" 1 ", True), ("0", False)):
        assert speedups_enabled({"CAPTION_SPEEDUPS": value}) is on
    assert speedups_enabled({}) is True
    for value in ("yes", "2", "off"):
        with pytest.raises(SpeedSwitchError, match="not %r" % value):
            speedups_enabled({"CAPTION_SPEEDUPS": value})


def test_a_bad_switch_value_is_one_line_and_exit_2_in_the_command(tmp_path):
    env = dict(os.environ, CAPTION_SPEEDUPS="yes")
    out = subprocess.run([sys.executable, "-m", "captioning", "describe", "--model",
                          str(tmp_path), str(tmp_path / "photo.jpg")],
                         env=env, cwd=ROOT, text=True, capture_output=True)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr == ("caption describe: error: CAPTION_SPEEDUPS must be 1 (the "
                          "speed-ups on, the default) or 0 (Theano's own behaviour), "
                          "not 'yes'\n")
