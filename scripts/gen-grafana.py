#!/usr/bin/env python3
"""Generates grafana/dashboards/*.json (commit the output; edit this file, not the JSON).

`GRAFANA_OUT=DIR` writes elsewhere (the tests compare that with the committed files).

Every panel query aggregates away `job` and `instance` (`sum without (job, instance)`
or `by (...)`), so the same query returns the same label sets whether Grafana reads
Prometheus (which adds them on scrape) or watchpost's own PromQL API (which has none).
"""
import json
import os
import pathlib

OUT = pathlib.Path(os.environ.get("GRAFANA_OUT") or
                   pathlib.Path(__file__).resolve().parent.parent / "grafana" / "dashboards")
SEL = 'instance=~"$instance"'
RI = "$__rate_interval"


def ds():
    return {"type": "prometheus", "uid": "${datasource}"}


class Board:
    def __init__(self, uid, title, tags):
        self.uid, self.title, self.tags = uid, title, tags
        self.panels, self.y, self.next_id = [], 0, 1
        self.x, self.line_h = 0, 0

    def row(self, title):
        if self.x > 0:  # finish the partly filled line of the previous row
            self.y += self.line_h
        self.panels.append({"type": "row", "title": title, "id": self.next_id, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.next_id += 1
        self.y += 1
        self.x, self.line_h = 0, 0

    def panel(self, title, targets, unit="short", kind="timeseries", w=8, h=8, thresholds=None,
              description="", min_=None, max_=None, stack=False, base="green", colors=None):
        if self.x + w > 24:
            self.x = 0
            self.y += self.line_h
            self.line_h = 0
        steps = [{"color": base, "value": None}]
        for value, color in thresholds or []:
            steps.append({"color": color, "value": value})
        defaults = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
        if min_ is not None:
            defaults["min"] = min_
        if max_ is not None:
            defaults["max"] = max_
        if kind == "timeseries":
            defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                                  "showPoints": "never", "spanNulls": True,
                                  "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                                  "thresholdsStyle": {"mode": "line" if thresholds else "off"}}
        panel = {
            "id": self.next_id, "type": kind, "title": title, "description": description,
            "datasource": ds(),
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": defaults, "overrides": [
                {"matcher": {"id": "byName", "options": name},
                 "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]}
                for name, color in (colors or {}).items()]},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}} if kind == "timeseries" else
                       {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"},
            "targets": [{"datasource": ds(), "refId": chr(ord("A") + i), "expr": expr,
                         "legendFormat": legend, "range": True, "instant": False}
                        for i, (expr, legend) in enumerate(targets)],
        }
        self.panels.append(panel)
        self.next_id += 1
        self.x += w
        self.line_h = max(self.line_h, h)
        if self.x >= 24:
            self.x = 0
            self.y += self.line_h
            self.line_h = 0

    def write(self):
        board = {
            "uid": self.uid, "title": self.title, "tags": self.tags, "editable": True,
            "schemaVersion": 39, "version": 1, "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
            "timezone": "browser", "graphTooltip": 1,
            "templating": {"list": [
                {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
                 "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
                {"name": "instance", "label": "Instance", "type": "query", "datasource": ds(),
                 "query": {"query": "label_values(watchpost_build_info, instance)", "refId": "instance"},
                 "definition": "label_values(watchpost_build_info, instance)",
                 "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2, "sort": 1,
                 "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "hide": 0, "options": []},
            ]},
            "annotations": {"list": []},
            "panels": self.panels,
        }
        path = OUT / f"{self.uid}.json"
        path.write_text(json.dumps(board, indent=2) + "\n")
        print(f"wrote {path} ({len([p for p in self.panels if p['type'] != 'row'])} panels)")


def overview():
    b = Board("watchpost-overview", "watchpost / Overview", ["watchpost"])
    b.row("Host")
    b.panel("CPU usage", [(f"max without (job, instance) (system_cpu_usage_ratio{{{SEL}}})", "all cores")],
            unit="percentunit", min_=0, max_=1, thresholds=[(0.9, "red")])
    b.panel("CPU usage per core", [(f"max without (job, instance) (system_cpu_core_usage_ratio{{{SEL}}})", "core {{core}}")],
            unit="percentunit", min_=0, max_=1)
    b.panel("Load average", [(f"max without (job, instance) (system_load1{{{SEL}}})", "1m"),
                             (f"max without (job, instance) (system_load5{{{SEL}}})", "5m"),
                             (f"max without (job, instance) (system_load15{{{SEL}}})", "15m")])
    b.panel("Memory", [(f"max without (job, instance) (system_memory_used_bytes{{{SEL}}})", "used"),
                       (f"max without (job, instance) (system_memory_total_bytes{{{SEL}}})", "total"),
                       (f"max without (job, instance) (system_swap_used_bytes{{{SEL}}})", "swap used")], unit="bytes")
    b.panel("Disk used per mount", [(f"max without (job, instance) (system_disk_used_bytes{{{SEL}}} / system_disk_total_bytes{{{SEL}}})", "{{mount}}")],
            unit="percentunit", min_=0, max_=1, thresholds=[(0.85, "orange"), (0.95, "red")])
    b.panel("Network", [(f"sum without (job, instance) (rate(system_network_received_bytes_total{{{SEL}}}[{RI}]))", "{{interface}} in"),
                        (f"sum without (job, instance) (rate(system_network_transmitted_bytes_total{{{SEL}}}[{RI}]))", "{{interface}} out")],
            unit="Bps")
    b.row("HTTP")
    b.panel("Requests by route", [(f"sum by (route) (rate(watchpost_http_requests_total{{{SEL}}}[{RI}]))", "{{route}}")], unit="reqps")
    b.panel("p99 latency by route", [(f"histogram_quantile(0.99, sum by (le, route) (rate(watchpost_http_request_duration_seconds_bucket{{{SEL}}}[{RI}])))", "{{route}}")],
            unit="s", thresholds=[(0.5, "orange"), (1, "red")])
    b.panel("Responses by status", [(f"sum by (status) (rate(watchpost_http_requests_total{{{SEL}}}[{RI}]))", "{{status}}")], unit="reqps", stack=True)
    b.row("Database")
    b.panel("Queries by name", [(f"sum by (query) (rate(watchpost_db_queries_total{{{SEL}}}[{RI}]))", "{{query}}")], unit="ops")
    b.panel("p99 query latency", [(f"histogram_quantile(0.99, sum by (le, query) (rate(watchpost_db_query_duration_seconds_bucket{{{SEL}}}[{RI}])))", "{{query}}")],
            unit="s", thresholds=[(0.1, "orange"), (0.5, "red")])
    b.panel("Slow queries and pool", [(f"sum by (query) (rate(watchpost_db_slow_queries_total{{{SEL}}}[{RI}]))", "slow {{query}}"),
                                      (f"sum by (state) (watchpost_db_pool_connections{{{SEL}}})", "pool {{state}}")])
    b.row("Caches and batch queues")
    b.panel("Cache hit ratio", [(f"sum by (cache) (rate(watchpost_cache_requests_total{{{SEL},result=\"hit\"}}[{RI}])) / sum by (cache) (rate(watchpost_cache_requests_total{{{SEL}}}[{RI}]))", "{{cache}}")],
            unit="percentunit", min_=0, max_=1, thresholds=[(0.5, "orange")])
    b.panel("Cache entries and evictions", [(f"sum by (cache) (watchpost_cache_entries{{{SEL}}})", "{{cache}} entries"),
                                            (f"sum by (cache) (rate(watchpost_cache_evictions_total{{{SEL}}}[{RI}]))", "{{cache}} evictions/s")])
    b.panel("Batch queue depth vs capacity", [(f"sum by (queue) (watchpost_batch_queue_depth{{{SEL}}})", "{{queue}} depth"),
                                              (f"sum by (queue) (watchpost_batch_queue_capacity{{{SEL}}})", "{{queue}} capacity")])
    b.panel("Batch flush p99", [(f"histogram_quantile(0.99, sum by (le, queue) (rate(watchpost_batch_flush_duration_seconds_bucket{{{SEL}}}[{RI}])))", "{{queue}}")], unit="s")
    b.panel("Batch items and retries", [(f"sum by (queue, outcome) (rate(watchpost_batch_items_total{{{SEL}}}[{RI}]))", "{{queue}} {{outcome}}"),
                                        (f"sum by (queue) (rate(watchpost_batch_retries_total{{{SEL}}}[{RI}]))", "{{queue}} retries")], unit="ops")
    b.row("Rules and notifications")
    b.panel("Rule evaluations", [(f"sum without (job, instance) (rate(watchpost_rule_evaluations_total{{{SEL}}}[{RI}]))", "evaluations"),
                                 (f"sum without (job, instance) (rate(watchpost_rule_evaluation_failures_total{{{SEL}}}[{RI}]))", "failures")], unit="ops")
    b.panel("Rule evaluation p99", [(f"histogram_quantile(0.99, sum by (le) (rate(watchpost_rule_evaluation_duration_seconds_bucket{{{SEL}}}[{RI}])))", "p99")], unit="s")
    b.panel("Notifications", [(f"sum by (receiver, outcome) (rate(watchpost_notifications_total{{{SEL}}}[{RI}]))", "{{receiver}} {{outcome}}"),
                              (f"sum by (receiver) (watchpost_notification_queue_depth{{{SEL}}})", "{{receiver}} queued")])
    b.panel("Last rule reload", [(f"min without (job, instance) (watchpost_rules_last_reload_success{{{SEL}}})", "reload ok")],
            kind="stat", w=8, h=4, thresholds=[(1, "green")], min_=0, max_=1, base="red",
            description="1 when the last rule file (re)load succeeded; 0 means a broken file is being ignored.")
    b.row("Process")
    b.panel("Resident memory", [(f"sum without (job, instance) (process_resident_memory_bytes{{{SEL}}})", "rss")], unit="bytes")
    b.panel("CPU", [(f"sum without (job, instance) (rate(process_cpu_seconds_total{{{SEL}}}[{RI}]))", "cores")], unit="percentunit")
    b.panel("Log events", [(f"sum by (level) (rate(watchpost_log_events_total{{{SEL}}}[{RI}]))", "{{level}}")], unit="ops")
    b.panel("Open file descriptors", [(f"sum without (job, instance) (process_open_fds{{{SEL}}})", "open"),
                                      (f"sum without (job, instance) (process_max_fds{{{SEL}}})", "limit")])
    b.panel("Uptime", [(f"time() - max without (job, instance) (process_start_time_seconds{{{SEL}}})", "watchpost"),
                       (f"max without (job, instance) (system_uptime_seconds{{{SEL}}})", "host")],
            kind="stat", unit="s")
    b.write()


SEVERITY_COLORS = {"critical": "red", "warning": "orange", "info": "blue"}


def alerts():
    b = Board("watchpost-alerts", "watchpost / Alerts", ["watchpost", "alerting"])
    b.row("Now")
    for sev, color in [("critical", "red"), ("warning", "orange"), ("info", "blue")]:
        b.panel(f"Active {sev}", [(f"sum without (job, instance) (watchpost_alerts_active{{{SEL},severity=\"{sev}\"}})", sev)],
                kind="stat", w=8, h=4, thresholds=[(1, color)])
    b.row("Rates")
    b.panel("Alerts started firing by severity", [(f"sum by (severity) (rate(watchpost_alerts_fired_total{{{SEL}}}[{RI}]))", "{{severity}}")],
            unit="ops", w=12, stack=True, colors=SEVERITY_COLORS,
            description="New alerts, and resolved ones firing again, per second.")
    b.panel("Alerts started firing by source", [(f"sum by (source) (rate(watchpost_alerts_fired_total{{{SEL}}}[{RI}]))", "{{source}}")],
            unit="ops", w=12, stack=True)
    b.panel("Alerts received by source", [(f"sum by (source) (rate(watchpost_alerts_received_total{{{SEL}}}[{RI}]))", "{{source}}")],
            unit="ops", w=12, stack=True, description="Every ingested alert, repeats and resolutions included.")
    b.panel("Active alerts by severity", [(f"sum by (severity) (watchpost_alerts_active{{{SEL}}})", "{{severity}}")], w=12,
            colors=SEVERITY_COLORS)
    b.panel("Ingest queue", [(f"sum by (queue) (watchpost_batch_queue_depth{{{SEL}}})", "{{queue}} depth"),
                             (f"sum by (queue, outcome) (rate(watchpost_batch_items_total{{{SEL}}}[{RI}]))", "{{queue}} {{outcome}}/s")], w=12)
    b.row("Notifications")
    b.panel("Notification outcomes", [(f"sum by (receiver, outcome) (rate(watchpost_notifications_total{{{SEL}}}[{RI}]))", "{{receiver}} {{outcome}}")],
            unit="ops", w=12, stack=True)
    b.panel("Notification queue", [(f"sum by (receiver) (watchpost_notification_queue_depth{{{SEL}}})", "{{receiver}}")], w=12,
            thresholds=[(100, "orange"), (1000, "red")])
    b.write()


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    overview()
    alerts()
