// GET /metrics: the bridge's counters and gauges in the Prometheus text format (version 0.0.4).
// docs/operations.md lists every metric and what it means.
// Thread safety: a pure function of its arguments.
#pragma once

#include <string>

#include "core/engine.hpp"
#include "io/memory.hpp"
#include "io/ws_server.hpp"

namespace mqttws {

std::string render_metrics(const engine_stats& engine, const ws_server::counters& server,
                           const memory_stats& memory);

// GET /clients: per-client counters as JSON (`{"clients":[…]}`), losses (conflated + dropped)
// first — the per-client view that would be too many series for Prometheus.
std::string render_clients(const std::vector<session_summary>& sessions);

}  // namespace mqttws
