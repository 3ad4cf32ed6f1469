"""Layer 0, files: atomic writes, list files and image names (``files``), the
one restricted unpickler (``safe_pickle``), resumable downloads and safe
archive extraction (``download``). No Theano, no numpy models."""
