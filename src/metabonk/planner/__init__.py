"""System 2: the LLM planner (OpenAI-compatible client, embedded SmolLM2), its versioned ACE playbook,
MiniLM retrieval, reflection, self-consistency, the reasoning-route bandit and the async controller.

Entry points: `Planner` (decisions), `AsyncPlanner` (async_planner.py: non-blocking use from System 1's loop),
`PlaybookStore` (versions), `Reflector` + `Curator` (learning after episodes), `make_client`.
"""
