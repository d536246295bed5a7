"""The verdict rule and the report, on made-up results (no processes, no network):

    python3 -m unittest discover -s benches/load/lib -t benches/load
"""

import unittest

from lib import report, rows, stats


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

    def test_no_row_is_planned_any_more(self):
        text = report.render(made_up_run())
        self.assertNotIn("## Rows not measured yet", text)
        self.assertFalse([row.id for row in rows.ROWS if row.planned])

    def test_tls_rows_are_judged_and_the_tls_target_reported(self):
        data = made_up_run()
        data["configs"]["one-core"]["sections"] = {"tls": tls_part()}
        text = report.render(data)
        lines = text.splitlines()
        h2 = [l for l in lines if l.startswith("| HTTP/2 over TLS requests/s")]
        self.assertEqual(len(h2), 2)  # against NGINX and HAProxy
        self.assertIn("**ahead**", next(l for l in h2 if "| NGINX |" in l))
        self.assertIn("**level**", next(l for l in h2 if "| HAProxy |" in l))
        handshakes = [l for l in lines if l.startswith("| new TLS connections/s")]
        self.assertEqual(len(handshakes), 2)
        self.assertIn("**behind**", next(l for l in handshakes if "| HAProxy |" in l))
        # Level over HTTP/2 against HAProxy and behind on handshakes: the TLS target is missed.
        self.assertIn("ahead of each over HTTP/2 (issue 30): **missed**", text)
        self.assertIn("TLSv1.3, TLS_AES_128_GCM_SHA256, X25519, h2", text)
        # The plain rows are still judged beside them.
        self.assertEqual(len([l for l in lines if l.startswith("| HTTP/1.1 requests/s (wrk)")]), 1)

    def test_tls_only_run_renders_without_plain_rounds(self):
        data = made_up_run()
        data["configs"]["one-core"] = {"sections": {"tls": tls_part()}}
        text = report.render(data)
        self.assertIn("### Over TLS", text)
        self.assertNotIn("### Requests through a weighted proxy", text)
        self.assertIn("HTTPS/1.1 requests/s (wrk, keep-alive) | NGINX", text)

    def test_failure_row_counts_failed_requests_as_a_limit(self):
        data = made_up_run()
        failed = {"Buckler": 3, "Buckler, retry budget 50 %": 0, "NGINX": 0, "HAProxy": 0}
        data["configs"]["one-core"]["sections"] = {"failure": section_part(
            "failure", failed, p99={"Buckler": 5.0, "NGINX": 10.0}, down_s=5, run_s=7)}
        text = report.render(data)
        self.assertIn("| 0 failed GETs through Buckler while one of three upstreams is killed and "
                      "comes back — one-core | 3 of 2,500 | **missed** |", text)
        p99 = [l for l in text.splitlines() if l.startswith("| HTTP/1.1 p99 latency while")]
        self.assertIn("**ahead**", next(l for l in p99 if "| NGINX |" in l))
        # A variant of Buckler is judged (its ratio is informative) but not counted as a peer.
        self.assertTrue(any("| Buckler, retry budget 50 % |" in l for l in p99))
        self.assertNotIn("retry budget 50 % (one-core)", text.split("## This run")[0])

    def test_middleware_row_with_the_redis_variant(self):
        data = made_up_run()
        part = section_part("middleware", {"Buckler": 0, "Buckler, Redis store": 0,
                                           "NGINX": 0, "HAProxy": 0},
                            rps={"Buckler": 100, "Buckler, Redis store": 80, "NGINX": 90,
                                 "HAProxy": 100})
        part["buckler_counters"] = {"Buckler": {"sla_exceeded": 0, "store_errors": 0},
                                    "Buckler, Redis store": {"sla_exceeded": 1, "store_errors": 2}}
        data["configs"]["one-core"]["sections"] = {"middleware": part}
        text = report.render(data)
        rps = [l for l in text.splitlines()
               if l.startswith("| HTTP/1.1 requests/s with API-key auth")]
        self.assertEqual(len(rps), 3)
        self.assertIn("**ahead**", next(l for l in rps if "| Buckler, Redis store |" in l))
        self.assertIn("**ahead**", next(l for l in rps if "| NGINX |" in l))
        self.assertIn("**level**", next(l for l in rps if "| HAProxy |" in l))
        self.assertIn("Buckler, Redis store: 1 / 2", text)
        # The Redis variant does not count against the targets: 3 plain rows against HAProxy
        # and 2 middleware rows against each of NGINX and HAProxy.
        self.assertIn("ahead in 2, level in 4, behind in 1 of 7 rows", text)

    def test_docs_section_has_medians_of_its_repetitions(self):
        data = made_up_run()
        runs = [{"up_s": 0.5, "serving_s": s, "routed_s": s + 0.1, "peak_rss_kib": 200 * 1024,
                 "rss_after_kib": 100 * 1024} for s in (1.0, 3.0, 2.0)]
        data["configs"]["one-core"]["sections"] = {"docs": [
            {"bytes": 20_000_000, "paths": 5_700, "operations": 11_399, "runs": runs}]}
        text = report.render(data)
        self.assertIn("## Document load time", text)
        self.assertIn("| 20.0 MB | 5,700 | 11,399 | 1.60 | 0.50 | 2.00 | 2.10 | 200 | 100 | 3 |",
                      text)


def tls_part():
    def runs(wrk, h2, handshakes):
        return {"tls-wrk": [{"round": i + 1, "rps": v, "p50": 1.0, "p99": 2.0, "failed": 0}
                            for i, v in enumerate(wrk)],
                "tls-h2": [{"round": i + 1, "rps": v, "mean": 3.0, "failed": 0,
                            "tls": "TLSv1.3, TLS_AES_128_GCM_SHA256, X25519, h2"}
                           for i, v in enumerate(h2)],
                "tls-handshake": [{"round": i + 1, "rps": v, "requests": 1000, "failed": 0,
                                   "tls": "TLSv1.3, TLS_AES_128_GCM_SHA256, X25519, http/1.1"}
                                  for i, v in enumerate(handshakes)]}
    return {
        "contenders": ["Buckler", "NGINX", "HAProxy"],
        "results": {"Buckler": runs([100] * 5, [120] * 5, [1000] * 5),
                    "NGINX": runs([100] * 5, [60, 61, 59, 60, 62], [900] * 5),
                    "HAProxy": runs([100] * 5, [125, 115, 122, 118, 120], [1500] * 5)},
        "negotiated": {"Buckler": "TLSv1.3, TLS_AES_256_GCM_SHA384, h2",
                       "NGINX": "TLSv1.3, TLS_AES_256_GCM_SHA384, h2",
                       "HAProxy": "TLSv1.3, TLS_AES_256_GCM_SHA384, h2"},
        "certificate": "RSA 2048, self-signed", "handshake_batch": 500, "handshake_seconds": 3,
    }


def section_part(tool, failed, rps=None, p99=None, **extra):
    """A section with one tool's runs: five rounds per contender, `failed` spread over them."""
    results = {}
    for name, total in failed.items():
        value = (rps or {}).get(name, 100)
        latency = (p99 or {}).get(name, 5.0)
        results[name] = {tool: [{"round": i + 1, "rps": value * (1 + 0.01 * (i - 2)),
                                 "p50": 1.0, "p99": latency * (1 + 0.01 * (i - 2)),
                                 "max": 20.0, "requests": 500,
                                 "failed": total if i == 0 else 0} for i in range(5)]}
    return dict({"contenders": list(failed), "results": results}, **extra)


if __name__ == "__main__":
    unittest.main()
