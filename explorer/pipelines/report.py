"""Markdown tables of finished runs (the CLI prints them)."""

from __future__ import annotations


def front_table(summary) -> str:
    """A Markdown table of the dense model and the Pareto front of a run summary (``nas.RunSummary``)."""
    metric, dense = summary.metric, summary.dense
    lines = [f"| model | heads per layer | FFN per layer | GMACs (seq 128) | % of dense MACs | {metric} "
             f"({summary.eval_split}, n={summary.eval_examples}) | % of dense | search {metric} | latency ms |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| dense | | | {dense['gmacs']:.3f} | 100 | {dense['eval'][metric]:.2f} | 100 | | {dense['latency_ms']:.2f} |"]
    for p in summary.front:
        q = p.eval[metric]
        rel = 100 * q / dense["eval"][metric] if dense["eval"][metric] else float("nan")
        lines.append(f"| subnetwork | {p.head_widths} | {p.ffn_widths} | {p.gmacs:.3f} | {100 * p.macs_fraction:.1f} "
                     f"| {q:.2f} | {rel:.1f} | {p.search_metric:.2f} | {p.latency_ms:.2f} |")
    return "\n".join(lines)


def results_table(metrics: dict) -> str:
    """A markdown table of dense vs pruned: every quality metric, latency, MACs, parameters."""
    names = list(metrics["quality"]["dense"]["metrics"])
    rows = ["| model | " + " | ".join(names) + " | end-to-end ms | decoder ms/token | encoder ms | GMACs | params (M) |",
            "|---|" + "---|" * (len(names) + 5)]
    quantized = metrics.get("settings", {}).get("quantize", "none")
    for name in [n for n in ("dense", "pruned", "pruned_fp32") if n in metrics["quality"]]:
        q = metrics["quality"][name]["metrics"]
        m = metrics["measurements"][name]
        lat = m["latency"]
        label = {"pruned": f"pruned ({quantized})" if quantized != "none" else "pruned",
                 "pruned_fp32": "pruned (fp32)"}.get(name, name)
        rows.append(f"| {label} | " + " | ".join(f"{q[k]:.2f}" for k in names) + f" | {lat['latency_ms']:.1f} | "
                    f"{lat['decode_ms_per_token']:.2f} | {lat['encoder_ms']:.1f} | {m['macs']['gmacs']:.2f} | "
                    f"{m['params']['params_m']:.1f} |")
    q = metrics["quality"]["dense"]
    lat = metrics["measurements"]["dense"]["latency"]
    main = q["main_metric"]
    kept = metrics["quality"]["pruned"]["metrics"][main] / q["metrics"][main] * 100 if q["metrics"][main] else float("nan")
    rows.append("")
    rows.append(f"{metrics['plan_summary']}; encoder sparsity {metrics['encoder_sparsity_achieved']:.3f}; "
                f"speed-up {metrics['speedup_end_to_end']:.2f}x end to end; {kept:.1f}% of dense {main}.")
    if metrics.get("task_lengths"):
        source, target = metrics["task_lengths"]
        rows.append(f"At the task's median lengths ({source} input tokens, {target} output tokens): dense "
                    f"{metrics['measurements']['dense']['latency_task']['latency_ms']:.1f} ms, pruned "
                    f"{metrics['measurements']['pruned']['latency_task']['latency_ms']:.1f} ms, speed-up "
                    f"{metrics['speedup_task_lengths']:.2f}x.")
        rows.append(encoder_share_line(metrics["measurements"]["dense"], source, target))
    if (iv := (metrics.get("intervals") or {}).get("int8_vs_fp32")):
        fp32_ms = metrics["measurements"]["pruned_fp32"]["latency"]["latency_ms"]
        rows.append(f"int8 against the same pruned model in fp32: {iv['diff']:+.2f} {main} [{iv['low']:+.2f}, "
                    f"{iv['high']:+.2f}], {fp32_ms / metrics['measurements']['pruned']['latency']['latency_ms']:.2f}x "
                    f"faster, weights {metrics['measurements']['pruned_fp32'].get('weight_mb', 0):.0f} -> "
                    f"{metrics['measurements']['pruned'].get('weight_mb', 0):.0f} MB.")
    if (iv := (metrics.get("intervals") or {}).get("vs_dense")):
        rows.append(f"Difference from dense: {iv['diff']:+.2f} {main}, 95% paired bootstrap interval "
                    f"[{iv['low']:+.2f}, {iv['high']:+.2f}] over {iv['n']} examples: "
                    + ("real (the interval excludes 0)." if iv["low"] > 0 or iv["high"] < 0 else "within noise."))
    rows.append(f"Quality on {q['num_examples']} {q['split']} examples of {metrics['task']} "
                f"({'greedy' if q['num_beams'] == 1 else str(q['num_beams']) + ' beams'}); latency: batch "
                f"{lat['batch_size']}, {lat['input_tokens']} input tokens, {lat['new_tokens']} new tokens, "
                f"{'greedy' if lat['num_beams'] == 1 else str(lat['num_beams']) + ' beams'}, on {metrics['device']}; "
                f"wall time {sum(metrics['stage_wall_s'].values()) / 60:.1f} min ({metrics['stage_wall_s']}).")
    if metrics["weights"] != "pretrained":
        rows.append("WEIGHTS ARE RANDOM: the quality columns mean nothing; only time, MACs and parameters do.")
    return "\n".join(rows)


def encoder_share_line(dense: dict, source: int, target: int) -> str:
    """One sentence on how much of the dense model's end-to-end time the encoder pass takes at 256 / 64
    tokens and at the task's median lengths (``dense``: the dense ``measurements`` entry, with
    ``latency`` and ``latency_task``). The rest is the decoder steps and ``generate``'s own work per call.
    NASH's decoder-depth argument (Sec. 3) is about long outputs; with one or two output tokens (GLUE as
    text-to-text) the encoder's share grows and so does what encoder sparsity buys."""
    def share(latency: dict) -> float:
        return 100 * min(latency["encoder_ms"] / latency["latency_ms"], 1.0) if latency["latency_ms"] else float("nan")

    long, task = dense["latency"], dense["latency_task"]
    at_task = share(task)
    return (f"The encoder pass takes {share(long):.0f}% of the dense model's time at {long['input_tokens']} in / "
            f"{long['new_tokens']} out and {at_task:.0f}% at the task's {source} in / {target} out; the rest is "
            f"the decoder steps and generate's own work per call"
            + (" (the encoder dominates: encoder sparsity sets the speed-up here)." if at_task >= 50 else "."))
