"""The main job, `metabonk demo`: video → latent actions/IDM → world model → System 1 → report."""
