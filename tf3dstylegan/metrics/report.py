"""The printed metrics report: one row per metric with its 95 % range and sample count when computed, then the
covariate effect and one section per group of a per-condition evaluation."""

RANGE_SUFFIXES = ("_lo", "_hi", "_n")
SECTIONS = ("effect", "by")  # results keys holding nested results
NOTES = ("interval_method",)  # results keys holding text printed under the table
GROUP_ENTRIES = ("count", "skipped", "effect")  # a group's keys that are not metrics


def _number(value):
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def _is_range_key(key, results):
    return any(key.endswith(suffix) and key[:-len(suffix)] in results for suffix in RANGE_SUFFIXES)


def _aligned(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def format_table(results):
    """Text table of `compute_metrics` results: metric, value, 95 % range, n (nested sections left out: see
    format_report), and how the ranges were made."""
    keys = [key for key in results if not _is_range_key(key, results) and key not in SECTIONS + NOTES]
    rows = [("metric", "value", "95% range", "n")]
    for key in keys:
        low, high, n = (results.get(f"{key}{suffix}") for suffix in RANGE_SUFFIXES)
        interval = f"[{_number(low)}, {_number(high)}]" if low is not None else ""
        rows.append((key, _number(results[key]), interval, "" if n is None else str(int(n))))
    note = f"\n95% range: {results['interval_method']}" if "interval_method" in results else ""
    return _aligned(rows) + note


def format_effect(effect):
    """The covariate effect: generated and real slopes with their 95 % confidence intervals."""
    title = f"covariate effect: {effect['measure']} against {effect['covariate']}"
    if "skipped" in effect:
        return f"{title}: skipped ({effect['skipped']})"
    if "steps" in effect:
        title += f" (generated: {effect['latents']} latents x {effect['steps']} values over the real range)"
    rows = [("", f"slope ({effect['unit']})", "95% CI (t)", "n")]
    for label, prefix in (("generated", ""), ("real", "real_")):
        if f"{prefix}slope" in effect:
            rows.append((label, _number(effect[f"{prefix}slope"]),
                         f"[{_number(effect[f'{prefix}slope_lo'])}, {_number(effect[f'{prefix}slope_hi'])}]",
                         str(int(effect[f"{prefix}slope_n"]))))
    return f"{title}\n{_aligned(rows)}"


def format_group(name, group):
    """One group's section: its real volume count, metrics, skipped metrics and covariate effect."""
    lines = [f"by {name}: {group['count']} real volumes"]
    metrics = {key: value for key, value in group.items() if key not in GROUP_ENTRIES}
    if set(metrics) - {"num"}:
        lines.append(format_table(metrics))
    if "skipped" in group:
        lines.append(f"skipped ({group['num']} volumes per set in this group): " + ", ".join(
            f"{metric} (needs {needed})" for metric, needed in group["skipped"].items()))
    if "effect" in group:
        lines.append(format_effect(group["effect"]))
    return "\n".join(line for line in lines if line)


def format_report(results):
    """The whole report: the overall table, the covariate effect, then one section per group."""
    parts = [format_table(results)] if any(key not in SECTIONS for key in results) else []
    if "effect" in results:
        parts.append(format_effect(results["effect"]))
    parts += [format_group(name, group) for name, group in results.get("by", {}).items()]
    return "\n\n".join(parts)
