"""The model runtime: completions and embeddings for the agent, by role (brain, executor,
embedder), through an ordered chain of backends per role: the resident llama.cpp worker
(``fazai_native``, its own process) first, then OpenAI-compatible endpoints.

Callers use :class:`~controller.llm.runtime.ModelRuntime` and the typed
:mod:`~controller.llm.completion` values; nothing above this package sees a backend,
a socket or an HTTP response.
"""
