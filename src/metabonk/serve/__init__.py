"""The orchestrator: a FastAPI service where workers, runs, episodes, the playbook and models meet (docs/serve.md)."""
