"""Dream actor-critic: λ-returns match their definition (TD(0) at λ=0, Monte Carlo at λ=1, cut at an end)."""

from __future__ import annotations

import torch

from metabonk.policy.dream_ac import lambda_returns


def test_lambda_returns_limits_and_termination() -> None:
    r = torch.tensor([[1.0, 2.0, 3.0]])
    v = torch.tensor([[10.0, 20.0, 30.0, 40.0]])  # V_0..V_H (V_H bootstraps)
    cont = torch.ones(1, 3)
    g = 0.5
    td0 = lambda_returns(r, v, cont, g, 0.0)
    torch.testing.assert_close(td0, torch.tensor([[1 + g * 20, 2 + g * 30, 3 + g * 40]]))
    mc = lambda_returns(r, v, cont, g, 1.0)
    torch.testing.assert_close(mc, torch.tensor([[1 + g * 2 + g**2 * 3 + g**3 * 40, 2 + g * 3 + g**2 * 40,
                                                  3 + g * 40]]))
    ended = lambda_returns(r, v, torch.tensor([[1.0, 0.0, 1.0]]), g, 1.0)  # the dream ends after step 1
    torch.testing.assert_close(ended[:, :2], torch.tensor([[1 + g * 2, 2.0]]))
