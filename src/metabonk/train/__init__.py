"""Training: the shared training loop (`fit`, `Fitter`: one optimizer / warm-up / clipping / EMA / logging /
resume path for every model whose `forward(batch)` returns `(loss, metrics)`) and the online loop."""
