"""LPM-Bench-mini results as a Markdown table and a PNG figure."""

from __future__ import annotations

from pathlib import Path

from model_core.bench.quality import COMPARISONS
from model_core.bench.validation import VARIANTS


def _f(v, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:.{nd}f}"


def markdown_table(result: dict) -> str:
    model = result["model"]
    lines = [
        f"LPM-Bench-mini: {result['scenarios']['samples']} samples x "
        f"{result['scenarios']['seconds_each']} s ({', '.join(f'{k} {v}' for k, v in result['scenarios']['mix'].items())}); "
        f"model: {model['source']}"
        + (f" ({model['version']})" if model.get("version") else "")
        + ("; judges UNTRAINED" if not result["judges"].get("trained") else ""),
        "",
        "| system | lip sync (r) | mouth motion | identity (cos) | listening (dP) | flicker "
        "| drift |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in result["systems"].items():
        lines.append(
            f"| {name} | {_f(m['lip_sync'])} | {_f(m.get('mouth_motion'))} | "
            f"{_f(m['identity'])} | "
            f"{_f(m['listening'])} | {_f(m['flicker'], 4)} | {_f(m['drift'])} |"
        )
    passes = [m["listening_pass"] for m in result["systems"].values() if m.get("listening_pass")]
    if passes:
        lines += [
            "",
            f"Listening: every system but Base streamed {passes[0]['seconds']} s of dialogue "
            f"({passes[0]['loops']} loops; 2-second samples hold too little silence), "
            "reaction frames pooled: P(reaction | partner speaks) - P(reaction | silence).",
        ]
    lines += ["", "| win rate (judge) | online wins |", "|---|---|"]
    for other in COMPARISONS:
        key = f"online_vs_{other}"
        d = result["win_details"].get(key)
        extra = f" ({d['wins']}W/{d['ties']}T/{d['losses']}L of {d['pairs']})" if d else ""
        lines.append(f"| {key} | {_f(result['win_rates'].get(key), 2)}{extra} |")
    return "\n".join(lines) + "\n"


def validation_table(validation: dict | None) -> str:
    if validation is None:
        return "Metric validation: skipped (--validation-samples 0).\n"
    lines = [
        f"Metric validation on {validation['samples']} ground-truth samples:",
        "",
        "| footage | lip sync | mouth motion | identity | listening | flicker | judge prefers GT |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        m = validation["table"][v]
        judge = validation["judge_prefers_ground_truth"].get(v)
        lines.append(
            f"| {v} | {_f(m['lip_sync'])} | {_f(m.get('mouth_motion'))} | {_f(m['identity'])} | "
            f"{_f(m['listening'])} | {_f(m['flicker'], 4)} | {_f(judge, 2)} |"
        )
    sep = validation["separates"]
    lv = validation.get("listening")
    if lv:
        lines += [
            "",
            f"Listening needs silence, which 2-second samples hardly hold: it is validated on "
            f"{lv['seconds']:.0f} s of ground-truth dialogue (other characters, pooled counts): "
            + ", ".join(f"{k} {_f(v)}" for k, v in lv["scores"].items()),
        ]
    lines += [
        "",
        "separates real footage from broken: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in sep.items()),
    ]
    return "\n".join(lines) + "\n"


def plot_quality(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(result["systems"])
    fig, axes = plt.subplots(2, 4, figsize=(19, 8))
    for ax, metric in zip(axes[0], ("lip_sync", "mouth_motion", "identity", "listening")):
        vals = [result["systems"][s].get(metric) or 0.0 for s in systems]
        ax.bar(systems, vals, color=["#444" if s == "ground_truth" else "#3a7" for s in systems])
        ax.set_title(metric)
        ax.tick_params(axis="x", rotation=45)
    ax = axes[1][0]
    ax.bar(systems, [result["systems"][s]["flicker"] or 0.0 for s in systems], color="#a53")
    ax.set_title("flicker (lower is better)")
    ax.tick_params(axis="x", rotation=45)
    for ax, metric in zip(axes[1][1:3], ("identity", "lip_sync")):
        for s in systems:
            st = result["systems"][s].get("stability")
            if st:
                vals = [float("nan") if m[metric] is None else m[metric] for m in st["per_minute"]]
                ax.plot(range(1, len(vals) + 1), vals, marker="o", label=s)
        ax.set_title(f"{metric} per minute (long stream)")
        ax.set_xlabel("minute")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    ax = axes[1][3]
    keys = [k for k, v in result["win_rates"].items() if v is not None]
    ax.barh(keys, [result["win_rates"][k] for k in keys], color="#37a")
    ax.axvline(0.5, color="k", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_title("online win rate")
    fig.suptitle(f"LPM-Bench-mini ({result['model']['source']})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
