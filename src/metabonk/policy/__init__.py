"""System 1: the fast recurrent actor-critic (CfC or Mamba core), trainers (BC, PPO, dream), evaluation.

Public API (import the modules directly; this package import stays light):
    metabonk.policy.config.PolicyConfig
    metabonk.policy.agent.Agent            (initial_state, step, forward_sequence, act, save, load)
    metabonk.policy.bc.train_bc / BCArgs
    metabonk.policy.ppo.train_ppo / PPOArgs
    metabonk.policy.dream_ac.train_dream / DreamArgs
    metabonk.policy.evaluate.evaluate_policy / evaluate_baselines
"""
