"""The optional C accelerator of the media plane (``gateway/media/_fastrtp.c``), or None.

None when it was not built (no C compiler at install time) or is switched off with
``GATEWAY_MEDIA_FASTPATH=0`` (for comparisons); the pure-Python code then does all the work, with the
same results (tests/media/test_fastrtp.py compares the two).
"""

from __future__ import annotations

import os
from types import ModuleType


def load() -> ModuleType | None:
    """The ``_fastrtp`` module, or None."""
    if os.environ.get("GATEWAY_MEDIA_FASTPATH", "1").strip().lower() in ("0", "no", "off", "false"):
        return None
    try:
        from . import _fastrtp
    except ImportError:
        return None
    return _fastrtp
