"""The figures of a ``freemem bench transcripts`` run: summaries per policy, the cache-priced cost against no pruning,
the table and the plot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from freemem.core.errors import ConfigError
from freemem.core.prompt_cache import PriceModel
from freemem_bench._common import (
    mean,
    pyplot,
    save_figure,
    time_summary,
)

__all__ = ["TABLE_COLUMNS", "cache_summary", "cumulative_cost", "plot", "summarize", "table_columns", "table_rows"]

# ------------------------------------------------------------------------------------------- summary


def summarize(results: Sequence[dict[str, Any]], policy_names: Sequence[str], budget: int,
              prices: Sequence[PriceModel] = ()) -> dict[str, Any]:
    """Per-policy figures over a set of replayed trajectories (with ``prices``: cost under prompt caching,
    see :func:`cache_summary`)."""
    out: dict[str, Any] = {}
    for name in policy_names:
        freed: list[float] = []
        tokens: list[int] = []
        refs = kept = pairing = 0
        per_turn_retention: list[float] = []
        ms: list[float] = []
        floor_over = 0
        per_traj: list[dict[str, Any]] = []
        for r in results:
            run = r["policies"][name]
            t_freed = [1 - t / u for t, u in zip(run["tokens"], run["unpruned"]) if u]
            freed.extend(t_freed)
            tokens.extend(run["tokens"])
            refs += sum(run["refs"])
            kept += sum(run["kept"])
            pairing += sum(run["pairing"])
            per_turn_retention.extend(k / n for k, n in zip(run["kept"], run["refs"]) if n)
            ms.extend(run["ms"])
            floor_over += len(run["floor_over_turns"])
            per_traj.append({
                "label": r["label"], "freed": mean(t_freed), "peak": max(run["tokens"], default=0),
                "over_budget": sum(1 for t in run["tokens"] if t > budget),
                "retention": (sum(run["kept"]) / sum(run["refs"])) if sum(run["refs"]) else None,
            })
        times = time_summary([m / 1000 for m in ms])
        out[name] = {
            "turns": len(tokens),
            "freed_mean": mean(freed),
            "peak_tokens": max(tokens, default=0),
            "turns_over_budget": sum(1 for t in tokens if t > budget),
            "turns_over_budget_protected_floor": floor_over if name == "freemem" else None,
            "trajectories_with_turns_over_budget": sum(1 for t in per_traj if t["over_budget"]),
            "references": refs,
            "references_kept": kept,
            "retention": kept / refs if refs else None,
            "retention_mean_per_turn": mean(per_turn_retention),
            "pairing_violations": pairing,
            "ms_per_turn_mean": times["mean_ms"],
            "ms_per_turn_p50": times["p50_ms"],
            "ms_per_turn_p95": times["p95_ms"],
            "ms_per_turn_max": times["max_ms"],
            "per_trajectory": per_traj,
        }
    if prices:
        cache = cache_summary(results, policy_names, prices)
        for name in policy_names:
            out[name].update(cache[name])
    return out


def cache_summary(results: Sequence[dict[str, Any]], policy_names: Sequence[str],
                  prices: Sequence[PriceModel]) -> dict[str, dict[str, Any]]:
    """Per policy: ``cache`` (per price model: price-weighted input in input-token units, its ratio to no
    pruning's, the cache hit rate), ``prefill_recomputed`` (tokens after each request's first change: what a
    server prefills again) and its ratio to no pruning's. The reference is the ``none`` policy when it ran,
    else the unpruned history under the same cache (nothing ever changes in it, so only new messages are
    recomputed)."""
    out: dict[str, dict[str, Any]] = {}
    for name in policy_names:
        per_model: dict[str, dict[str, Any]] = {}
        for price in prices:
            cost = 0.0
            cached_total = tokens_total = 0
            for r in results:
                run = r["policies"][name]
                for tokens, cached in zip(run["tokens"], run["cached"][price.name]):
                    cost += price.cost(cached, tokens - cached)
                    cached_total += cached
                    tokens_total += tokens
            per_model[price.name] = {"cost": round(cost, 1), "tokens": tokens_total, "cached": cached_total,
                                     "hit_rate": cached_total / tokens_total if tokens_total else None}
        first = per_model[prices[0].name]
        out[name] = {"cache": per_model, "prefill_recomputed": first["tokens"] - first["cached"]}
    reference = out.get("none") or _unpruned_reference(results, prices)
    for name in policy_names:
        for model, figures in out[name]["cache"].items():
            ref_cost = reference["cache"][model]["cost"]
            figures["cost_vs_none"] = figures["cost"] / ref_cost if ref_cost else None
        ref_re = reference["prefill_recomputed"]
        out[name]["prefill_recomputed_vs_none"] = out[name]["prefill_recomputed"] / ref_re if ref_re else None
    return out


def _unpruned_reference(results: Sequence[dict[str, Any]], prices: Sequence[PriceModel]) -> dict[str, Any]:
    """No pruning's cache figures when the ``none`` policy did not run: each request re-reads the previous
    one whole (its unpruned size) and recomputes only what is new."""
    per_model: dict[str, dict[str, Any]] = {}
    recomputed = 0
    for price in prices:
        cost = 0.0
        for r in results:
            run = next(iter(r["policies"].values()))
            previous = 0
            for unpruned in run["unpruned"]:
                cached = min(previous, unpruned)
                cost += price.cost(cached, unpruned - cached)
                if price is prices[0]:
                    recomputed += unpruned - cached
                previous = unpruned
        per_model[price.name] = {"cost": cost}
    return {"cache": per_model, "prefill_recomputed": recomputed}


TABLE_COLUMNS = ("policy", "turns", "freed", "peak tokens", "turns over budget", "retention", "pairing violations",
                 "ms/turn mean", "ms/turn p95")


def table_columns(prices: Sequence[PriceModel] = ()) -> tuple[str, ...]:
    """:data:`TABLE_COLUMNS`, with the cache columns for ``prices`` after the retention column."""
    if not prices:
        return TABLE_COLUMNS
    cache = (*(f"input cost ×none ({p.name})" for p in prices), f"cache hits ({prices[0].name})",
             "prefill recomputed ×none")
    k = TABLE_COLUMNS.index("pairing violations")
    return (*TABLE_COLUMNS[:k], *cache, *TABLE_COLUMNS[k:])


def table_rows(summary: dict[str, Any], prices: Sequence[PriceModel] = ()) -> list[list[str]]:
    rows = []
    k = TABLE_COLUMNS.index("pairing violations")
    for name, s in summary.items():
        over = f"{s['turns_over_budget']}"
        if s.get("turns_over_budget_protected_floor"):
            over += f" ({s['turns_over_budget_protected_floor']} floor)"
        rows.append([
            name, str(s["turns"]), _pct(s["freed_mean"]), f"{s['peak_tokens']:,}", over,
            "–" if s["retention"] is None else f"{s['retention']:.3f}", str(s["pairing_violations"]),
            f"{s['ms_per_turn_mean']:.2f}", f"{s['ms_per_turn_p95']:.2f}",
        ])
        if prices:
            cache = s["cache"]
            cells = [_ratio(cache[p.name]["cost_vs_none"]) for p in prices]
            cells.append(_pct(cache[prices[0].name]["hit_rate"]))
            cells.append(_ratio(s["prefill_recomputed_vs_none"]))
            rows[-1][k:k] = cells
    return rows


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}×"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def cumulative_cost(results: Sequence[dict[str, Any]], name: str, price: PriceModel) -> list[float]:
    """Policy ``name``'s cache-priced input summed turn by turn over ``results`` (in replay order)."""
    out: list[float] = []
    total = 0.0
    for r in results:
        run = r["policies"][name]
        for tokens, cached in zip(run["tokens"], run["cached"].get(price.name, [])):
            total += price.cost(cached, tokens - cached)
            out.append(total)
    return out


def plot(results: Sequence[dict[str, Any]], summary_by_source: dict[str, dict[str, Any]], path: str,
         budget: int, item: str | None = None, price: PriceModel | None = None) -> str:
    """Context tokens per turn on one trajectory, freed vs retention per trajectory and policy, and (with a
    ``price``) each policy's cumulative cache-priced input per turn over all trajectories."""
    plt = pyplot()
    chosen = None
    if item:
        chosen = next((r for r in results if item in r["label"]), None)
        if chosen is None:
            raise ConfigError(f"--plot-item {item!r}: no such trajectory")
    if chosen is None:
        chosen = max(results, key=lambda r: max(r["policies"].get("none", next(iter(r["policies"].values())))
                                                ["tokens"], default=0))
    if price is not None:
        fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(19, 4.8))
    else:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    styles = {"none": ("0.55", "--"), "freemem": ("tab:green", "-"), "clear_tool_uses": ("tab:blue", "-"),
              "trim": ("tab:orange", "-")}
    for name, run in chosen["policies"].items():
        color, ls = styles.get(name, (None, "-"))
        ax1.plot(range(1, len(run["tokens"]) + 1), run["tokens"], label=name, color=color, linestyle=ls,
                 marker=".", markersize=3)
    ax1.axhline(budget, color="red", linewidth=0.8, linestyle=":", label=f"budget {budget:,}")
    ax1.set_title(f"context sent per turn — {chosen['label']}", fontsize=9)
    ax1.set_xlabel("assistant turn")
    ax1.set_ylabel("context tokens")
    ax1.legend(fontsize=8)
    markers = ["o", "s", "^", "D"]
    for k, (source, summary) in enumerate(summary_by_source.items()):
        for name, s in summary.items():
            if name == "none":
                continue
            pts = [(t["freed"], t["retention"]) for t in s["per_trajectory"]
                   if t["freed"] is not None and t["retention"] is not None]
            if not pts:
                continue
            color, _ = styles.get(name, (None, "-"))
            ax2.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, alpha=0.6, color=color,
                        marker=markers[k % len(markers)], label=f"{name} ({source})")
    ax2.set_xlabel("mean share of tokens freed (per trajectory)")
    ax2.set_ylabel("reference retention")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_title("freed vs retention (one point per trajectory)", fontsize=9)
    ax2.legend(fontsize=7)
    if price is not None:
        for name in chosen["policies"]:
            series = cumulative_cost(results, name, price)
            if not series:
                continue
            color, ls = styles.get(name, (None, "-"))
            ax3.plot(range(1, len(series) + 1), [v / 1e6 for v in series], label=name, color=color, linestyle=ls)
        ax3.set_xlabel(f"assistant turn (all {len(results)} trajectories, one after another)")
        ax3.set_ylabel("cumulative input cost (M input-token units)")
        ttl = "no TTL" if price.ttl_s is None else f"TTL {price.ttl_s:g} s"
        ax3.set_title(f"cache-priced input, {price.name} (read {price.read:g}x, write {price.write:g}x, {ttl})",
                      fontsize=9)
        ax3.legend(fontsize=8)
    save_figure(fig, path)
    return chosen["label"]
