"""A hive run's report: report.md (tables with 95 % CIs, the chosen merge, the DungeonMaster's proposals
and verdicts, time constants), hive.json (the whole record, with machine and command) and hive.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metabonk.common.results import machine_info, write_json_atomic
from metabonk.hive.tau import tau_divergence


def _fmt(s: dict[str, Any]) -> str:
    lo, hi = s["ci95"]
    return f"{s['mean']:.3g} [{lo:.3g}, {hi:.3g}]"


def _table(scores: dict[str, Any], norm: dict[str, Any], vote: dict[str, float], promoted: str) -> list[str]:
    niches = list(scores)
    lines = ["| candidate | " + " | ".join(niches) + " | vote (mean normalised) |",
             "|---|" + "---|" * (len(niches) + 1)]
    for c in vote:
        mark = " **(promoted)**" if c == promoted else ""
        cells = [f"{_fmt(scores[n][c])} ({norm[c][n]:.0f})" for n in niches]
        lines.append(f"| {c}{mark} | " + " | ".join(cells) + f" | {vote[c]:.1f} |")
    return lines


def _targets_line(t: dict[str, Any]) -> str:
    gain = ", ".join(f"{n} {v:.1f} [{lo:.0f}, {hi:.0f}]" for (n, v), (lo, hi)
                     in zip(t["own_niche_normalised"].items(), t["own_niche_normalised_ci95"].values(), strict=True))
    raw = ", ".join(f"{n} {100 * v:.1f} %" for n, v in t["own_niche_raw_ratio"].items())
    lo, hi = t["gap_over_soup_ci95"]
    ok = {True: "met", False: "NOT met"}
    where = ("the held-out seeds" if t["split"] == "held-out"
             else "the validation seeds (the promoted merge was chosen on these)")
    return (f"On {where}: own niche, % of the specialist's gain over the start: {gain} — target "
            f"≥ 90 {ok[t['retention_gain_met']]}; % of the specialist's raw return: {raw} — target ≥ 90 % "
            f"{ok[t['retention_raw_met']]}. Over the uniform soup: {t['gap_over_soup_points']:+.1f} points "
            f"[{lo:+.1f}, {hi:+.1f}] — target ≥ +10 {ok[t['gap_met']]}.")


def markdown(doc: dict[str, Any]) -> str:
    rounds = doc["rounds"]
    lines = [f"# Hive run: {', '.join(doc['config']['specialists'])}", "",
             f"`{doc['machine']['command']}` — commit {doc['machine']['git_commit']}, "
             f"{len(rounds)} round(s), {doc['config']['episodes']} validation seeds per niche, "
             f"{doc['wall_s']:.0f} s.", ""]
    for r in rounds:
        niches = list(r["scores"])
        lines += [f"## Round {r['round']}", "",
                  "Return on each validation niche (the seeds the vote chose on), mean [95 % CI] (normalised: "
                  "start policy 0, the niche's specialist 100).", "",
                  *_table(r["scores"], r["normalised"], r["vote"], r["promoted"])]
        search = r.get("layer_search")
        if search:
            lams = ", ".join(f"{g} {v:g}" for g, v in search["layer_scales"].items())
            lines += ["", f"Per-layer λ of merge:task-arith/layers (coordinate ascent from λ = "
                      f"{search['start_scale']:g}, {search['candidates_scored']} candidates scored on the "
                      f"validation seeds): {lams}."]
        held = r.get("heldout")
        if held:
            lines += ["", f"The same candidates on {held['episodes']} held-out seeds per niche (from "
                      f"{held['seed']}; the promoted one is still the validation vote's):", "",
                      *_table(held["scores"], held["normalised"], held["vote"], r["promoted"])]
        lines += ["", f"Promoted: **{r['promoted']}**.", "", _targets_line(r["targets"]), ""]
        if held:
            lines += [_targets_line(r["targets_validation"]), ""]
        dud = [n for n, ok in r.get("specialist_learned", {}).items() if not ok]
        if dud:
            lines += [f"Specialists that did not beat the start policy measurably on their own niche: {', '.join(dud)} "
                      "(their niche is normalised by the start's 95 % resolution instead).", ""]
        causes = {n: r["scores"][n][r["promoted"]]["causes"] for n in niches}
        lines += ["Death causes of the promoted merge: " + "; ".join(f"{n}: {c}" for n, c in causes.items()), ""]
        if r["proposals"]:
            lines += ["| DungeonMaster proposal | route | changes | reason | verdict (expert / random survival) |",
                      "|---|---|---|---|---|"]
            for p in r["proposals"]:
                v = p["verdict"]
                surv = f"{v.get('expert_survival', 0):.2f} / {v.get('random_survival', 0):.2f}"
                lines.append(f"| {p['niche']} | {p['route']} | `{p['changes']}` | {p['reason']} | "
                             f"{v.get('verdict')} ({surv}) |")
            lines.append("")
        tau = {k: v for k, v in r["time_constants"].items() if v}
        if tau:
            names = list(tau)
            lines += ["CfC time constants (median over units of 1/|t_a|, ticks) of each specialist on its niche: "
                      + ", ".join(f"{n} {tau[n]['median_ticks']:.2f}" for n in names) + "."]
            shift = r.get("tau_shift", {})
            if shift.get("from_start"):
                lines += ["Mean |Δ log10 τ| from the start policy on the same niche: "
                          + ", ".join(f"{k} {v:.3f}" for k, v in shift["from_start"].items()) + "; between "
                          "specialists: " + ", ".join(f"{k} {v:.3f}" for k, v in shift["between"].items()) + "."]
            elif len(names) > 1:
                pairs = [f"{a}/{b} {tau_divergence(tau[a]['tau_ticks'], tau[b]['tau_ticks']):.3f}"
                         for i, a in enumerate(names) for b in names[i + 1:]]
                lines += ["Mean |Δ log10 τ| between specialists: " + ", ".join(pairs) + "."]
            lines.append("")
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = doc["rounds"][-1]
    niches, cands = list(r["scores"]), list(r["vote"])
    fig, axes = plt.subplots(1, len(niches), figsize=(4 * len(niches), 3.6), squeeze=False)
    for ax, n in zip(axes[0], niches, strict=True):
        means = [r["scores"][n][c]["mean"] for c in cands]
        err = [[m - r["scores"][n][c]["ci95"][0] for c, m in zip(cands, means, strict=True)],
               [r["scores"][n][c]["ci95"][1] - m for c, m in zip(cands, means, strict=True)]]
        colors = ["tab:orange" if c == r["promoted"] else "tab:blue" for c in cands]
        ax.bar(range(len(cands)), means, yerr=err, color=colors, capsize=3)
        ax.set_xticks(range(len(cands)), [c.split(":")[-1] for c in cands], rotation=60, fontsize=8)
        ax.set_title(f"niche {n}")
        ax.set_ylabel("return (95 % CI)")
    fig.suptitle(f"hive round {r['round']}: promoted {r['promoted']}")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def write_report(doc: dict[str, Any], out: Path, json_path: Path | None = None) -> dict[str, Path]:
    """Write report.md, hive.json and hive.png under `out` (and the JSON also to `json_path`)."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine_info(), **doc}
    paths = {"json": write_json_atomic(out / "hive.json", doc)}
    if json_path is not None:
        paths["results"] = write_json_atomic(json_path, doc)
    md = out / "report.md"
    tmp = md.with_name(".report.md.tmp")
    tmp.write_text(markdown(doc))
    tmp.replace(md)
    paths["report"] = md
    paths["plot"] = out / "hive.png"
    plot(doc, paths["plot"])
    return paths
