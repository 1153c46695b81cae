"""The core: plain text and plain message lists in, validated deletions and folds out.

Nothing here imports LangGraph, LangChain, Redis or an HTTP client (``tests/test_layers.py`` checks it).
One concept per module: :mod:`~freemem.core.context` (a message list as one addressable text),
:mod:`~freemem.core.commands` (the ``{"prefix","suffix"}`` command format), :mod:`~freemem.core.apply`
(applying commands safely), :mod:`~freemem.core.anchors`, :mod:`~freemem.core.rendering`,
:mod:`~freemem.core.blocks` (what may happen to each content block type: the table of signed and kept blocks),
:mod:`~freemem.core.pairing`, :mod:`~freemem.core.loops`, :mod:`~freemem.core.folding` and
:mod:`~freemem.core.digest`, :mod:`~freemem.core.archive` (restoring what was removed),
:mod:`~freemem.core.ledger`, :mod:`~freemem.core.prompt_cache` and :mod:`~freemem.core.errors`. File formats
(:mod:`freemem.io`), deadlines, triggers and scheduling (:mod:`freemem.engine`) live with their users.

The public names are re-exported from :mod:`freemem` itself; this package re-exports nothing, so each name
has one import path.
"""
