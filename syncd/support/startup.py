"""What a ``syncd`` process does not pay for while it starts.

Most of a process's fixed cost is importing (asyncio, aiohttp, pydantic, structlog,
syncd's own modules): about a million objects, nearly all of which live until exit.

* **Garbage collection.** Left on, the cyclic collector walks those objects again and
  again while they are being built (every 700 new containers) and once more at exit,
  for nothing: measured, about a quarter of a short ``syncd once``'s CPU. The entry
  point (``syncd/__main__.py``) calls :func:`hold` on its first lines; :func:`settle`
  moves what the imports built into the collector's permanent generation
  (``gc.freeze``) and resumes collecting, with a first threshold that lets one CMDB
  answer's objects go in one pass.
* **Pydantic's plugin scan.** Building the first model makes pydantic read the entry
  points of every installed distribution, looking for plugins (observability hooks
  syncd has no use for): ~20 ms in the image, ~60 ms in a development venv. The scan
  is off (``PYDANTIC_DISABLE_PLUGINS``) between :func:`hold` and :func:`settle`, unless
  the environment already says otherwise; the variable is gone again afterwards, so
  command sources' children never see it.

Code that calls :func:`syncd.cli.main` in-process (the tests) never held anything:
:func:`settle` then changes nothing, so no caller's objects are frozen.
"""

from __future__ import annotations

import gc
import os

FIRST_GENERATION = 10_000
"""New containers before a young collection (CPython's default: 700). One batch's answer
and its rows and lines are a few thousand objects that die together; collecting every
700 scans each batch's live ones several times."""

PLUGINS = "PYDANTIC_DISABLE_PLUGINS"

_set_plugins = False
"""Whether :func:`hold` set :data:`PLUGINS` (and :func:`settle` takes it back)."""


def hold() -> None:
    """No collections and no plugin scan until :func:`settle` (the entry point's first
    lines)."""
    global _set_plugins
    gc.disable()
    if PLUGINS not in os.environ:
        os.environ[PLUGINS] = "__all__"
        _set_plugins = True


def settle() -> None:
    """The imports are done: freeze what they built, collect again from here on, and give
    the environment back as it was.

    A no-op unless :func:`hold` ran (collections are off): an in-process caller keeps
    its own collector as it was.
    """
    global _set_plugins
    if _set_plugins:
        os.environ.pop(PLUGINS, None)
        _set_plugins = False
    if gc.isenabled():
        return
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_GENERATION, second, third)
    gc.enable()
