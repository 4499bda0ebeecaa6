"""The resident inference worker around llama.cpp (llama-cpp-python): its own process,
serving the newline-delimited JSON protocol of :mod:`fazai_native.protocol` over a Unix
socket. It imports nothing of ``controller``: a crash or a hung decode here never takes
the controller with it."""
