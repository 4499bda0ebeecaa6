"""An OpenAI-compatible HTTP API over the model runtime (``fazai model serve``):
``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/models`` and
``/metrics``, so that any OpenAI client (and the tools built on one) can use the local
worker and the fallback chain.

It sits above :mod:`controller.server`, whose serving stack it reuses (uvicorn with the
guarded h11 protocol: request-head deadlines, a connection cap; bearer tokens compared
in constant time; the loopback-only default), and below the CLI.
"""
