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

void add_shard_stats(engine_stats& into, const engine_stats& more) {
    const auto add = [](auto& a, const auto& b) { a += b; };
    const auto add_all = [&](auto& a, const auto& b) {
        for (std::size_t i = 0; i < std::size(a); ++i)
            a[i] += b[i];
    };
    add(into.connections, more.connections);
    add(into.sessions, more.sessions);
    add(into.messages_in, more.messages_in);
    add(into.messages_local, more.messages_local);
    add(into.deliveries, more.deliveries);
    add(into.redeliveries, more.redeliveries);
    add(into.publishes, more.publishes);
    add(into.publishes_dropped, more.publishes_dropped);
    add(into.publishes_refused, more.publishes_refused);
    add(into.publishers_paused, more.publishers_paused);
    add(into.publish_duplicates, more.publish_duplicates);
    add(into.resumes, more.resumes);
    add(into.resumes_with_gap, more.resumes_with_gap);
    add(into.sessions_evicted, more.sessions_evicted);
    add(into.auth_failures, more.auth_failures);
    add(into.denied, more.denied);
    add(into.rate_limited, more.rate_limited);
    add(into.conflated, more.conflated);
    add(into.dropped, more.dropped);
    add(into.slow_consumers, more.slow_consumers);
    add(into.backlog_shed, more.backlog_shed);
    add(into.heartbeat_timeouts, more.heartbeat_timeouts);
    add(into.token_expiries, more.token_expiries);
    add(into.token_refreshes, more.token_refreshes);
    add(into.revoked, more.revoked);
    add(into.signatures_refused, more.signatures_refused);
    add(into.replays_refused, more.replays_refused);
    add(into.wills_published, more.wills_published);
    add(into.commands, more.commands);
    add(into.command_retries, more.command_retries);
    add_all(into.command_outcomes, more.command_outcomes);
    add_all(into.command_latency, more.command_latency);
    add(into.command_latency_sum_ms, more.command_latency_sum_ms);
    add_all(into.frames_in, more.frames_in);
    add_all(into.frames_out, more.frames_out);
    add_all(into.ack_latency, more.ack_latency);
    add(into.ack_latency_sum_ms, more.ack_latency_sum_ms);
    add(into.inflight, more.inflight);
    add(into.backlog, more.backlog);
    add(into.backlog_bytes, more.backlog_bytes);
    add(into.held, more.held);
    add(into.congested, more.congested);
    add(into.queued_bytes, more.queued_bytes);
    add(into.offline_queued, more.offline_queued);
    add(into.parked, more.parked);
    add(into.commands_in_flight, more.commands_in_flight);
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
