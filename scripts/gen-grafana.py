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
    def __init__(self, uid, title, tags, var=("instance", "Instance", "label_values(watchpost_build_info, instance)"),
                 file=None):
        self.uid, self.title, self.tags, self.var = uid, title, tags, var
        self.file = file or f"{uid}.json"
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
                {"name": self.var[0], "label": self.var[1], "type": "query", "datasource": ds(),
                 "query": {"query": self.var[2], "refId": self.var[0]},
                 "definition": self.var[2],
                 "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2, "sort": 1,
                 "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "hide": 0, "options": []},
            ]},
            "annotations": {"list": []},
            "panels": self.panels,
        }
        path = OUT / self.file
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


PG = 'server=~"$server"'


def postgres():
    """PostgreSQL servers under postgres_exporter's names (watchpost's collector or the
    exporter itself with a `server` label); one `server` variable."""
    b = Board("watchpost-postgres", "watchpost / PostgreSQL", ["watchpost", "postgres"],
              var=("server", "Server", "label_values(pg_up, server)"), file="postgres.json")
    b.row("Server")
    b.panel("Up", [(f"min by (server) (pg_up{{{PG}}})", "{{server}}")], kind="stat", w=6, h=4,
            thresholds=[(1, "green")], min_=0, max_=1, base="red",
            description="1 while watchpost reaches the server.")
    b.panel("Connections used", [(f"sum by (server) (pg_stat_activity_count{{{PG}}}) / on (server) max by (server) (pg_settings_max_connections{{{PG}}})", "{{server}}")],
            kind="stat", unit="percentunit", w=6, h=4, min_=0, max_=1, thresholds=[(0.8, "orange"), (0.95, "red")])
    b.panel("Longest transaction", [(f"max by (server) (pg_stat_activity_max_tx_duration{{{PG}}})", "{{server}}")],
            kind="stat", unit="s", w=6, h=4, thresholds=[(60, "orange"), (300, "red")])
    b.panel("Started", [(f"time() - max by (server) (pg_postmaster_start_time_seconds{{{PG}}})", "{{server}}")],
            kind="stat", unit="s", w=6, h=4, description="Time since the postmaster started.")
    b.row("Activity")
    b.panel("Connections by state", [(f"sum by (server, state) (pg_stat_activity_count{{{PG}}})", "{{server}} {{state}}"),
                                     (f"max by (server) (pg_settings_max_connections{{{PG}}})", "{{server}} max_connections")])
    b.panel("Transactions per second", [(f"sum by (server, datname) (rate(pg_stat_database_xact_commit{{{PG}}}[{RI}]))", "{{server}}/{{datname}} commit"),
                                        (f"sum by (server, datname) (rate(pg_stat_database_xact_rollback{{{PG}}}[{RI}]))", "{{server}}/{{datname}} rollback")],
            unit="ops")
    b.panel("Cache hit ratio", [(f"sum by (server, datname) (rate(pg_stat_database_blks_hit{{{PG}}}[{RI}])) / (sum by (server, datname) (rate(pg_stat_database_blks_hit{{{PG}}}[{RI}])) + sum by (server, datname) (rate(pg_stat_database_blks_read{{{PG}}}[{RI}])))", "{{server}}/{{datname}}")],
            unit="percentunit", min_=0, max_=1, thresholds=[(0.9, "orange")])
    b.panel("Rows", [(f"sum by (server) (rate(pg_stat_database_tup_fetched{{{PG}}}[{RI}]))", "{{server}} fetched"),
                     (f"sum by (server) (rate(pg_stat_database_tup_inserted{{{PG}}}[{RI}]))", "{{server}} inserted"),
                     (f"sum by (server) (rate(pg_stat_database_tup_updated{{{PG}}}[{RI}]))", "{{server}} updated"),
                     (f"sum by (server) (rate(pg_stat_database_tup_deleted{{{PG}}}[{RI}]))", "{{server}} deleted")], unit="ops")
    b.panel("Locks by mode", [(f"sum by (server, mode) (pg_locks_count{{{PG}}})", "{{server}} {{mode}}")], stack=True)
    b.panel("Deadlocks and conflicts", [(f"sum by (server, datname) (rate(pg_stat_database_deadlocks{{{PG}}}[{RI}]))", "{{server}}/{{datname}} deadlocks"),
                                        (f"sum by (server, datname) (rate(pg_stat_database_conflicts{{{PG}}}[{RI}]))", "{{server}}/{{datname}} conflicts")],
            unit="ops")
    b.row("Storage and replication")
    b.panel("Database size", [(f"sum by (server, datname) (pg_database_size_bytes{{{PG}}})", "{{server}}/{{datname}}")], unit="bytes")
    b.panel("Temporary files written", [(f"sum by (server, datname) (rate(pg_stat_database_temp_bytes{{{PG}}}[{RI}]))", "{{server}}/{{datname}}")], unit="Bps")
    b.panel("Replication", [(f"max by (server) (pg_replication_lag_seconds{{{PG}}})", "{{server}} replay lag (replica)"),
                            (f"max by (server, application_name) (pg_stat_replication_replay_lag_seconds{{{PG}}})", "{{server}} → {{application_name}}")],
            unit="s")
    b.panel("Buffers written", [(f"sum by (server) (rate(pg_stat_bgwriter_buffers_checkpoint_total{{{PG}}}[{RI}]))", "{{server}} checkpoint"),
                                (f"sum by (server) (rate(pg_stat_bgwriter_buffers_clean_total{{{PG}}}[{RI}]))", "{{server}} bgwriter"),
                                (f"sum by (server) (rate(pg_stat_bgwriter_buffers_backend_total{{{PG}}}[{RI}]))", "{{server}} backend")],
            unit="ops", w=16)
    b.row("Statements (pg_stat_statements)")
    # The collector already keeps only the top `statements_top` statements per server.
    b.panel("Time spent by statement", [(f"sum by (server, queryid) (rate(pg_stat_statements_total_time_seconds{{{PG}}}[{RI}]))", "{{server}} {{queryid}}")],
            unit="percentunit", w=12, description="Seconds of execution per second of the top statements (statements_top); the text is in pg_stat_statements_query_info.")
    b.panel("Mean time per call", [(f"sum by (server, queryid) (rate(pg_stat_statements_total_time_seconds{{{PG}}}[{RI}])) / sum by (server, queryid) (rate(pg_stat_statements_calls{{{PG}}}[{RI}]))", "{{server}} {{queryid}}")],
            unit="s", w=12)
    b.write()


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    overview()
    alerts()
    postgres()
