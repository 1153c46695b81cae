"""Benchmarks behind ``freemem bench NAME``.

Each module ``freemem.bench.NAME`` exposes ``add_arguments(parser)`` and ``run(args) -> dict``; the
dispatcher in :mod:`freemem.cli.bench` mounts them. Shared loaders, tables, JSON/PNG output and timing live in
:mod:`freemem.bench._common`. Benchmarks read local data only and never download anything.
"""
