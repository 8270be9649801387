// The bodies of the bridge's HTTP endpoints. GET /metrics: the bridge's counters and gauges in
// the Prometheus text format (version 0.0.4); docs/operations.md lists every metric.
// Thread safety: a pure function of its arguments.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/engine.hpp"
#include "io/memory.hpp"
#include "io/upstream.hpp"
#include "io/ws_server.hpp"

namespace mqttws {

// `threads`: per-thread gauges, with --threads > 1 (io_threads.hpp).
std::string render_metrics(const engine_stats& engine, const connection_counters& server,
                           const memory_stats& memory,
                           const std::vector<io_thread_stats>& threads = {},
                           const upstream_stats& upstream = {});

// GET /clients: per-client counters as JSON (`{"clients":[…]}`), losses (conflated + dropped)
// first — the per-client view that would be too many series for Prometheus.
std::string render_clients(const std::vector<session_summary>& sessions);

// GET /healthz: `{"status":"ok"|"unavailable","upstream":…,"clients":…,…}` (200 or 503 by the
// app, from engine_stats::upstream_up).
std::string render_health(const engine_stats& engine, std::string_view version);

}  // namespace mqttws
