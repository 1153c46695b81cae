"""What the engine (:class:`freemem.FreeMemory`) runs on, beside the core's edit algebra: when to clean
(:mod:`~freemem.engine.triggers`), calling a cleaner or a summariser within a round's deadline
(:mod:`~freemem.engine.round_calls`), and choosing a round's edits by their prompt-cache cost
(:mod:`~freemem.engine.scheduling`). Policies build on the engine; the engine imports no policy."""
