"""Every test gets its own empty code cache (``CAPTION_CACHE_DIR``).

Tests encode photos with fake CNNs; their codes must never land in the
user's real cache (``~/.cache/captioning``), where ``caption train`` would
read them back.

Importing ``captioning`` here configures Theano before any test module
imports it.
"""
import pytest

import captioning.stack  # noqa: F401


@pytest.fixture(autouse=True)
def private_code_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CAPTION_CACHE_DIR", str(tmp_path_factory.mktemp("code-cache")))
