"""Scan's Python loop tells a reused output buffer by its address, not its contents.

Theano's Cython scan loop does not build on Python 3.11, so Scan runs its
Python loop (``Scan.execute``). Before each tick it hands the inner function
a view of the outer buffer for each output; after the tick it copies the
output there unless the inner function wrote into that view. To tell, it
keeps ``array.data`` from before the tick and compares it with the same
array's ``.data`` after. On Python 2 that compared two buffer objects; on
Python 3 ``.data`` is a memoryview and ``==`` compares memoryviews element
by element: one full pass over every such output, every tick (1 ms for the
attention model's 3.2 MB attention MLP layer, 0.16 ms for a 64 x 2048 gate
block). The array is the same object on both sides (checked just before),
so its memory is the same and the comparison is true, except that NaN
contents made it false and caused a needless copy: comparing the data
addresses makes the same decision at no cost. :func:`install` makes that
one change in the five lines of ``Scan.execute`` that do it and leaves the
rest of the method as it is; nothing is computed differently.

``import captioning.stack`` installs it unless ``CAPTION_SPEEDUPS=0``.
"""
import inspect
import textwrap
import warnings

from theano.scan_module import scan_op

__all__ = ["install"]

# (Theano 1.0.5's line, the replacement, how many times it occurs)
_REPLACEMENTS = [
    ("old_output_data[idx] = var.data",
     "old_output_data[idx] = _data_address(var)", 1),
    ("old_mitmot_input_data[idx] = var.data",
     "old_mitmot_input_data[idx] = _data_address(var)", 1),
    ("same_data = (new_var.data == old_data)",
     "same_data = (_data_address(new_var) == old_data)", 1),
    ("output_reused = (new_var.data == old_data)",
     "output_reused = (_data_address(new_var) == old_data)", 2),
]

_original = None


def _data_address(array):
    """Where ``array``'s elements start in memory."""
    return array.__array_interface__["data"][0]


def install():
    """Replace ``Scan.execute`` by the patched copy (once). Another Theano's
    ``execute`` is left alone, with a warning: this is only speed."""
    global _original
    if _original is not None:
        return
    source = textwrap.dedent(inspect.getsource(scan_op.Scan.execute))
    for old, new, count in _REPLACEMENTS:
        if source.count(old) != count:
            warnings.warn("captioning: Scan.execute is not Theano 1.0.5's; its "
                          "output-reuse check is left as it is (slower, same results)")
            return
        source = source.replace(old, new)
    namespace = dict(vars(scan_op), _data_address=_data_address)
    exec(compile(source, __file__, "exec"), namespace)
    execute = namespace["execute"]
    execute.__module__, execute.__qualname__ = __name__, "Scan.execute"
    _original = scan_op.Scan.execute
    scan_op.Scan.execute = execute
