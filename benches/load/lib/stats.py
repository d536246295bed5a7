"""The verdict rule: Buckler against a peer, round by round, with a 95 % interval."""

import math
import random
import statistics

# Fewer rounds than this give no verdict: a bootstrap over one or two rounds is no interval.
MIN_ROUNDS = 3

VERDICT_RULE = (
    "**Verdict rule.** Every head-to-head row compares Buckler with one peer round by round: "
    "in each round the two ran within minutes of each other, so the ratio of their results in "
    "that round is free of the machine's drift between rounds. The row's ratio is the geometric "
    "mean of the per-round ratios, with a 95 % bootstrap interval (rounds resampled with "
    "replacement 10,000 times, seeded). Buckler is **ahead** when the interval lies above "
    "1.00, **level** when it spans 1.00, and **behind** when it lies below 1.00. For "
    "requests/s the ratio is Buckler's over the peer's; for p99 latency it is the peer's over "
    "Buckler's, so ahead always means better. With fewer than "
    f"{MIN_ROUNDS} rounds (a `--quick` run) there is no verdict.")


def ratio_interval(ratios, resamples=10_000):
    """The geometric mean of `ratios` and a 95 % bootstrap interval for it (rounds resampled
    with replacement; seeded, so the same rounds give the same interval)."""
    logs = [math.log(ratio) for ratio in ratios]
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(logs, k=len(logs))) for _ in range(resamples))
    return (math.exp(statistics.fmean(logs)), math.exp(means[int(0.025 * resamples)]),
            math.exp(means[int(0.975 * resamples) - 1]))


def verdict(low, high, rounds):
    """"ahead", "level" or "behind" by the rule above; None with too few rounds."""
    if rounds < MIN_ROUNDS:
        return None
    if low > 1.0:
        return "ahead"
    if high < 1.0:
        return "behind"
    return "level"


def head_to_head(ours, theirs, metric, higher_is_better=True):
    """Our runs against theirs (lists of per-round results with a "round" key) on `metric`.
    Returns {ratio, low, high, rounds, ahead_in, verdict}, or None when no round has both."""
    by_round = {x["round"]: x[metric] for x in theirs}
    ratios = []
    for x in ours:
        other = by_round.get(x["round"])
        # A round where either side has nothing (no requests served, a zero latency) has no ratio.
        if not x[metric] or not other or math.isnan(x[metric]) or math.isnan(other):
            continue
        ratios.append(x[metric] / other if higher_is_better else other / x[metric])
    if not ratios:
        return None
    ratio, low, high = ratio_interval(ratios)
    return {"ratio": ratio, "low": low, "high": high, "rounds": len(ratios),
            "ahead_in": sum(r > 1 for r in ratios), "verdict": verdict(low, high, len(ratios))}


def median(values):
    return statistics.median(values) if values else float("nan")
