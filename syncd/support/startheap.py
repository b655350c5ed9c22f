"""The start-up heap: no garbage collection while the imports run, then none of it again.

A ``syncd`` process spends most of its fixed cost importing (asyncio, aiohttp, pydantic,
structlog, syncd's own modules): about a million objects, nearly all of which live until
exit. The cyclic collector, left on, walks them again and again while they are being
built (every 700 new containers) and once more at exit, for nothing: measured, about a
quarter of a short ``syncd once``'s CPU. So the entry point (``syncd/__main__.py``)
holds collections from its first line, and :func:`settle` moves what the imports built
into the collector's permanent generation (``gc.freeze``) and resumes collecting, with a
first threshold that lets one CMDB answer's objects go in one pass.

Code that calls :func:`syncd.cli.main` in-process (the tests) never held collections:
:func:`settle` then changes nothing, so no caller's objects are frozen.
"""

from __future__ import annotations

import gc

FIRST_GENERATION = 10_000
"""New containers before a young collection (CPython's default: 700). One batch's answer
and its rows and lines are a few thousand objects that die together; collecting every
700 scans each batch's live ones several times."""


def hold() -> None:
    """No collections until :func:`settle` (the entry point's first lines)."""
    gc.disable()


def settle() -> None:
    """The imports are done: freeze what they built, collect again from here on.

    A no-op unless :func:`hold` ran (collections are off): an in-process caller keeps
    its own collector as it was.
    """
    if gc.isenabled():
        return
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_GENERATION, second, third)
    gc.enable()
