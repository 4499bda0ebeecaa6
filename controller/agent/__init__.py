"""The LLM agent that resolves Goals: its knowledge base, and the loop that uses it."""
