// What the engine tells operators: the sessions behind GET /clients, the figures behind
// /metrics (engine_stats.hpp), and the names of frame kinds used as metric labels. Read-only
// views of the engine's state, kept apart from the event handlers in engine.cpp.
//
// Thread safety: the engine's thread, like the rest of the engine.
#include <algorithm>
#include <utility>

#include "core/engine.hpp"
#include "core/engine_stats.hpp"

namespace mqttws {

std::vector<session_summary> engine::sessions(std::size_t limit) const {
    std::vector<session_summary> all;
    all.reserve(sessions_.size());
    sessions_.for_each([&](const session& s) {
        if (!s.authenticated()) return;
        session_summary x;
        x.client_id = s.client_id();
        x.remote_address = s.remote_address();
        x.connected = s.connection() != 0;
        x.subscriptions = s.subscriptions().size();
        x.counters = s.counters();
        x.inflight = s.deliveries().inflight();
        x.backlog = s.deliveries().backlog();
        x.history = s.deliveries().history_size();
        x.held = s.pacing().held.size();
        x.congested = s.pacing().budget.congested();
        all.push_back(std::move(x));
    });
    const auto losses = [](const session_summary& x) {
        return x.counters.conflated + x.counters.dropped;
    };
    std::sort(all.begin(), all.end(),
              [&](const auto& a, const auto& b) { return losses(a) > losses(b); });
    if (all.size() > limit) all.resize(limit);
    return all;
}

engine_stats engine::stats() const {
    engine_stats s = ctx_.stats;
    s.connections = sessions_.connections();
    s.sessions = sessions_.size();
    s.filters = subscriptions_.filter_count();
    s.upstream_up = ctx_.upstream_up;
    s.offline_queued = relay_.offline_queued();
    s.retained_cached = subscriptions_.retained_count();
    s.parked = subscriptions_.parked_count();
    s.congested = pacer_.congested_count();
    s.commands_in_flight = commands_.in_flight();
    sessions_.for_each([&](const session& x) {
        s.inflight += x.deliveries().inflight();
        s.backlog += x.deliveries().backlog();
        s.backlog_bytes += x.deliveries().backlog_bytes();
        s.held += x.pacing().held.size();
        if (x.connection() != 0) s.queued_bytes += x.pacing().budget.estimate();
    });
    return s;
}

std::string_view name(out_kind k) {
    static constexpr std::string_view names[] = {
        "auth_response",  "suback",         "unsuback",       "ack",
        "error",          "pong",           "status",         "message",
        "batch",          "ping",           "token_expiring", "refresh_response",
        "command_status", "command_summary"};
    return names[static_cast<std::size_t>(k)];
}

std::string_view name(in_kind k) {
    static constexpr std::string_view names[] = {
        "auth",  "subscribe", "unsubscribe", "publish",        "ack",    "ping",   "device_report",
        "batch", "refresh",   "command",     "command_result", "binary", "invalid"};
    return names[static_cast<std::size_t>(k)];
}

}  // namespace mqttws
