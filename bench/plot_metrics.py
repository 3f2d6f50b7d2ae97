#!/usr/bin/env python3
"""Plots the Grafana dashboard's queries (docs/grafana-dashboard.json) from a
series of real /metrics scrapes, for when Grafana cannot be installed.

    plot_metrics.py SCRAPES_DIR OUTPUT.png

SCRAPES_DIR holds one exposition per scrape, named by its Unix time
(bench/metrics-series.sh writes them). The exposition is parsed with
prometheus_client's text parser; rates are differences between scrapes.
"""

import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def load(directory):
    """[(t, {(name, labels): value})], oldest first."""
    series = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".prom"):
            continue
        with open(os.path.join(directory, name)) as f:
            text = f.read()
        if not text:
            continue
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        series.append((float(name[: -len(".prom")]), samples))
    t0 = series[0][0]
    return [(t - t0, s) for t, s in series]


def gauge(series, name, group=None, **match):
    """{legend: [(t, v)]} summed by the label `group`."""
    out = defaultdict(list)
    for t, samples in series:
        sums = defaultdict(float)
        for (n, labels), v in samples.items():
            d = dict(labels)
            if n != name or any(d.get(k) != w for k, w in match.items()):
                continue
            sums[d.get(group, name) if group else name] += v
        for k, v in sums.items():
            out[k].append((t, v))
    return out


def rate(series, name, group=None, scale=1.0, **match):
    """Per-second increase between scrapes, summed by `group`."""
    raw = gauge(series, name, group, **match)
    out = {}
    for k, points in raw.items():
        out[k] = [
            (t1, max(0.0, (v1 - v0) / (t1 - t0)) * scale)
            for (t0, v0), (t1, v1) in zip(points, points[1:])
            if t1 > t0
        ]
    return out


def histogram_mean(series, name):
    """Mean of the observations between scrapes (sum / count increase)."""
    s = gauge(series, name + "_sum")[name + "_sum"]
    c = gauge(series, name + "_count")[name + "_count"]
    out = []
    for (t0, s0), (t1, s1), (_, c0), (_, c1) in zip(s, s[1:], c, c[1:]):
        if c1 > c0:
            out.append((t1, (s1 - s0) / (c1 - c0)))
    return out


def plot(ax, title, lines, unit=""):
    for legend, points in sorted(lines.items()):
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=legend, linewidth=1.4)
    ax.set_title(title, fontsize=10, loc="left", color="#d8d9da")
    ax.set_ylabel(unit, fontsize=8, color="#9fa7b3")
    ax.tick_params(labelsize=7, colors="#9fa7b3")
    ax.grid(True, color="#2c3235", linewidth=0.6)
    ax.set_facecolor("#181b1f")
    for spine in ax.spines.values():
        spine.set_color("#2c3235")
    if lines:
        ax.legend(fontsize=6, loc="upper left", facecolor="#181b1f", labelcolor="#d8d9da", framealpha=0.7)


def main(directory, output):
    series = load(directory)
    fig, axes = plt.subplots(4, 3, figsize=(18, 14), facecolor="#111217")
    a = axes.flat
    sessions = gauge(series, "tandem_sessions_live")
    sessions.update({f"participants {k}": v for k, v in gauge(series, "tandem_participants", "state").items()})
    plot(next(a), "Live sessions and participants", sessions, "count")
    joins = rate(series, "tandem_joins_total")
    joins = {"joins": joins.get("tandem_joins_total", [])}
    joins.update({f"denied: {k}": v for k, v in rate(series, "tandem_join_denials_total", "code").items()})
    plot(next(a), "Joins and denials per second", joins, "per second")
    plot(next(a), "Forwarded packets per second", rate(series, "tandem_forwarded_packets_total", "kind"), "packets/s")
    plot(next(a), "Forwarded bitrate", rate(series, "tandem_forwarded_bytes_total", "kind", scale=8 / 1e6), "Mbit/s")
    plot(next(a), "Media shard busy (0-1)", {f"shard {k}": v for k, v in gauge(series, "tandem_shard_busy_ratio", "shard").items()}, "ratio")
    ledger = {"mean append (ms)": [(t, v * 1000) for t, v in histogram_mean(series, "tandem_ledger_append_duration_seconds")],
              "events per batch": histogram_mean(series, "tandem_ledger_batch_events")}
    plot(next(a), "Ledger: append latency and batch size", ledger)
    plot(next(a), "Signaling messages per second", rate(series, "tandem_signal_messages_received_total", "type"), "per second")
    http = defaultdict(list)
    for (t, samples), (t0, before) in zip(series[1:], series):
        sums = defaultdict(float)
        for (n, labels), v in samples.items():
            if n == "tandem_http_requests_total":
                d = dict(labels)
                key = f"{d['route']} {d['status']}"
                sums[key] += (v - before.get((n, labels), 0.0)) / (t - t0)
        for k, v in sums.items():
            http[k].append((t, v))
    plot(next(a), "HTTP requests by route and status", http, "per second")
    plot(next(a), "Open connections", gauge(series, "tandem_connections_open", "kind"), "count")
    cpu = rate(series, "tandem_process_cpu_seconds_total")
    plot(next(a), "Process CPU", {"CPU (cores)": cpu.get("tandem_process_cpu_seconds_total", [])}, "cores")
    mem = gauge(series, "tandem_process_resident_memory_bytes")
    plot(next(a), "Process resident memory", {"RSS (MiB)": [(t, v / 2**20) for t, v in mem.get("tandem_process_resident_memory_bytes", [])]}, "MiB")
    fds = gauge(series, "tandem_process_open_fds")
    tls = rate(series, "tandem_tls_handshake_failures_total", "reason")
    plot(next(a), "Open file descriptors", {"open fds": fds.get("tandem_process_open_fds", []), **{f"TLS failures/s {k}": v for k, v in tls.items()}}, "count")
    for ax in axes[-1]:
        ax.set_xlabel("seconds", fontsize=8, color="#9fa7b3")
    rooms = " → ".join(os.environ.get("ROOMS", "4 12 6").split())
    build = os.environ.get("BUILD", "release build")
    fig.suptitle(f"Tandem — the dashboard's queries over a real scrape series (1 s scrapes; tandem load-test {rooms} three-person rooms; {build})",
                 color="#d8d9da", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(output, dpi=80, facecolor=fig.get_facecolor())
    print(f"wrote {output} from {len(series)} scrapes")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
