"""The report's "How stable was the machine" section: formats bench.analyse.stability, decides nothing."""

from __future__ import annotations

from bench.analyse.stability import STABILITY_CSV, UNSTABLE_CSV, Stability
from bench.analyse.views import fmt_seconds, fmt_speedup
from bench.measure.estimates import CANARY_SLOW, CANARY_SPREAD, MIN_PAIRS, SUSPECT_FACTOR, WIDE_INTERVAL


def _value(figure: str, value: float) -> str:
    if figure == "canary_quiet_s":
        return fmt_seconds(value)
    if figure.endswith("_ratio"):
        return f"{value:.2f}x"
    return f"{value:,.0f}"


def stability_section(state: Stability) -> list[str]:
    lines = ["", "## How stable was the machine", ""]
    if not state.measured:
        return [*lines, "This run was made before the suite tracked the machine's stability (no canary)."]
    verdict = "**The machine was noisy during this run.**" if state.noisy else "The machine was quiet during this run."
    lines += [
        f"{verdict} Each cell's implementations were timed in interleaved rounds, in a fresh random order every "
        "round, with a canary (a fixed small workload) in every round; a speedup is the median of the ratios of "
        "rounds timed side by side, so a slow stretch of the machine that covers both cancels. A group's pass is "
        f"*disturbed* when its canary ran {CANARY_SLOW:g}x slower than the run's quiet level or varied by more "
        f"than {CANARY_SPREAD:.0%} (IQR / median); rows use their undisturbed passes. A row is *unstable* when "
        f"every pass was disturbed, or when it is at odds by {SUSPECT_FACTOR:g}x with two or more cells of its series "
        "(slower than a larger cell, or faster than a smaller one): far off its neighbours. "
        "A speedup is *uncertain* when its interval "
        f"straddles its claim's threshold, spans more than {WIDE_INTERVAL:g}x, rests on fewer than {MIN_PAIRS} pairs "
        "of rounds or on an unstable row, or, on a noisy run, comes from rounds not timed side by side. "
        "Groups with an uncertain speedup, a row at odds with a neighbour or an unstable row got more rounds "
        "after the sweep, claims of the headline setting first; then, where the profile gives them time of "
        "their own, the groups out of cache that a kernel's spread goal is judged on (one more sample per pass; "
        "Beyond the note). "
        "The canary's drift over the run is the `drift` plot.",
        "",
    ]
    table = state.summary.assign(
        value=[_value(f, v) for f, v in zip(state.summary["figure"], state.summary["value"], strict=True)]
    )
    lines += [table.to_markdown(index=False), "", f"Also in `{STABILITY_CSV}`; unstable rows in `{UNSTABLE_CSV}`.", ""]
    if state.uncertain.empty:
        lines.append(
            "No claim cell of the headline setting is uncertain: every verdict below rests on cells whose "
            "interval lies on one side of the threshold."
        )
    else:
        cells = "; ".join(
            f"`{r['implementation']}` at m = {int(r['m']):,}, n_x = {int(r['n_x']):,}: "
            f"{fmt_speedup(float(r['speedup']))} [{fmt_speedup(float(r['speedup_low']))}, "
            f"{fmt_speedup(float(r['speedup_high']))}] against {fmt_speedup(float(r['threshold']))}"
            for r in state.uncertain.to_dict("records")
        )
        lines.append(f"Uncertain claim cells of the headline setting, left out of the verdicts: {cells}.")
    return lines
