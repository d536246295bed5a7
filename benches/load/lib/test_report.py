"""The verdict rule and the report, on made-up results (no processes, no network):

    python3 -m unittest discover -s benches/load/lib -t benches/load
"""

import unittest

from lib import report, stats


def rounds(values, metric="rps"):
    return [{"round": i + 1, metric: v} for i, v in enumerate(values)]


class VerdictRule(unittest.TestCase):
    def test_interval_above_one_is_ahead(self):
        result = stats.head_to_head(rounds([110, 112, 108, 111, 109]), rounds([100] * 5), "rps")
        self.assertEqual(result["verdict"], "ahead")
        self.assertGreater(result["low"], 1.0)
        self.assertEqual(result["ahead_in"], 5)

    def test_interval_spanning_one_is_level(self):
        result = stats.head_to_head(rounds([105, 95, 103, 97, 101]), rounds([100] * 5), "rps")
        self.assertEqual(result["verdict"], "level")
        self.assertLessEqual(result["low"], 1.0)
        self.assertGreaterEqual(result["high"], 1.0)

    def test_interval_below_one_is_behind(self):
        result = stats.head_to_head(rounds([80, 85, 82, 84, 81]), rounds([100] * 5), "rps")
        self.assertEqual(result["verdict"], "behind")

    def test_lower_latency_is_ahead(self):
        ours, theirs = rounds([2.0, 2.1, 1.9, 2.0], "p99"), rounds([3.0, 3.1, 2.9, 3.0], "p99")
        result = stats.head_to_head(ours, theirs, "p99", higher_is_better=False)
        self.assertEqual(result["verdict"], "ahead")

    def test_too_few_rounds_give_no_verdict(self):
        result = stats.head_to_head(rounds([150, 160]), rounds([100, 100]), "rps")
        self.assertIsNone(result["verdict"])

    def test_rounds_pair_by_number_and_empty_ones_are_skipped(self):
        ours = rounds([0, 110, 110, 110])  # round 1: Buckler served nothing
        theirs = [{"round": r, "rps": 100} for r in (1, 2, 3)]  # round 4: the peer has none
        result = stats.head_to_head(ours, theirs, "rps")
        self.assertEqual(result["rounds"], 2)

    def test_no_common_round_is_none(self):
        self.assertIsNone(stats.head_to_head(rounds([1]), [], "rps"))


def results(wrk, h2):
    return {"wrk": [{"round": i + 1, "rps": v, "p50": 1.0, "p99": 2.0, "failed": 0}
                    for i, v in enumerate(wrk)],
            "h2": [{"round": i + 1, "rps": v, "mean": 3.0, "failed": 0} for i, v in enumerate(h2)]}


def made_up_run():
    one_core = {
        "contenders": ["direct", "Buckler", "HAProxy"],
        "results": {"direct": results([200] * 5, []), "Buckler": results([100] * 5, [120] * 5),
                    "HAProxy": results([90, 91, 89, 90, 92], [130, 131, 129, 130, 132])},
        "share": [750, 250], "peak_rss_kib": {"Buckler": 17000}, "idle_rss_kib": {"Buckler": 10240},
    }
    return {"schema": 1, "date": "2026-12-07 22:00 UTC", "mode": "full",
            "settings": {"rounds": 5, "seconds": 5, "connections": 64, "h2_connections": 16,
                         "h2_streams": 10},
            "machine": {"cores": 2, "model": "test", "kernel": "test", "versions": {}},
            "builds": [["Buckler", "/bin/buckler", "plain release"]],
            "configs": {"one-core": one_core}, "criterion": []}


class Report(unittest.TestCase):
    def test_rule_on_top_and_a_verdict_in_every_row(self):
        text = report.render(made_up_run())
        self.assertLess(text.index("**Verdict rule.**"), text.index("## Summary"))
        rows = [line for line in text.splitlines() if line.startswith("| HTTP")]
        self.assertEqual(len(rows), 3)  # wrk req/s, wrk p99, h2load req/s against HAProxy
        self.assertIn("**ahead**", rows[0])  # wrk: 100 against ~90
        self.assertIn("**level**", rows[1])  # p99: equal
        self.assertIn("**behind**", rows[2])  # h2load: 120 against ~130
        self.assertIn("No row behind any peer: **missed**", text)

    def test_planned_rows_are_listed_not_judged(self):
        text = report.render(made_up_run())
        self.assertIn("## Rows not measured yet", text)
        self.assertIn("HTTPS/1.1 requests/s (wrk) (one-core, tls)", text)


if __name__ == "__main__":
    unittest.main()
