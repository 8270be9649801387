// The engine's counters and gauges, as /metrics and /healthz report them, and one client's as
// GET /clients does. Each component of the engine counts what it owns in the shared
// engine_stats; engine::stats() adds the gauges.
// Thread safety: plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/session.hpp"

namespace mqttws {

// Frames the bridge sends, by type, for metrics.
enum class out_kind : std::uint8_t {
    auth_response,
    suback,
    unsuback,
    ack,
    error,
    pong,
    status,
    message,
    batch,
    ping,
    token_expiring,
    refresh_response,
    command_status,
    command_summary,
    count
};
// Frames clients send, by type: the request kinds in client_request order, then these.
enum class in_kind : std::uint8_t {
    auth,
    subscribe,
    unsubscribe,
    publish,
    ack,
    ping,
    device_report,
    batch,
    refresh,
    command,
    command_result,
    binary,
    invalid,
    count
};
std::string_view name(out_kind k);
std::string_view name(in_kind k);

// Ack latency of QoS 1/2 deliveries (ms from sending to the client's ack): bucket upper bounds.
inline constexpr std::int64_t ack_latency_bounds_ms[] = {1,   2,   5,    10,   25,   50,   100,
                                                         250, 500, 1000, 2500, 5000, 10000};
inline constexpr std::size_t ack_latency_buckets =
    sizeof(ack_latency_bounds_ms) / sizeof(std::int64_t) + 1;

struct engine_stats {
    std::size_t connections = 0;
    std::size_t sessions = 0;  // including detached ones waiting for a resume
    std::size_t filters = 0;   // filters held upstream
    bool upstream_up = false;
    std::uint64_t upstream_connects = 0;
    std::uint64_t messages_in = 0;         // from the broker
    std::uint64_t messages_local = 0;      // published through this bridge (local fan-out)
    std::uint64_t deliveries = 0;          // deliveries to clients for those messages
    std::uint64_t redeliveries = 0;        // QoS >= 1 deliveries resent for want of an ack
    std::uint64_t publishes = 0;           // client publishes relayed upstream
    std::uint64_t publishes_dropped = 0;   // qos 0 publishes dropped while the broker was down
    std::uint64_t publishes_refused = 0;   // qos >= 1 publishes refused (offline queue full)
    std::uint64_t publishers_paused = 0;   // publishers not read for a while (upstream congested)
    std::uint64_t publish_duplicates = 0;  // QoS 2 resends answered without publishing again
    std::uint64_t resumes = 0;             // sessions taken over by a new connection
    std::uint64_t resumes_with_gap = 0;    // ...that could not replay everything (resumed:false)
    std::uint64_t sessions_evicted = 0;  // detached sessions ended early (--max-detached-sessions)
    std::uint64_t auth_failures = 0;
    std::uint64_t denied = 0;              // requests refused by the ACL
    std::uint64_t rate_limited = 0;        // publishes refused by the rate limit
    std::uint64_t conflated = 0;           // QoS 0 deliveries replaced by a newer one (per client)
    std::uint64_t dropped = 0;             // QoS 0 deliveries not sent (over budget, no conflation)
    std::uint64_t slow_consumers = 0;      // clients closed with 4008
    std::uint64_t backlog_shed = 0;        // QoS 1/2 deliveries dropped: a session's backlog full
    std::uint64_t heartbeat_timeouts = 0;  // clients closed with 4001
    std::uint64_t token_expiries = 0;      // clients closed with 4401 when their token expired
    std::uint64_t token_refreshes = 0;     // tokens replaced while connected
    std::uint64_t revoked = 0;             // clients closed (or sessions ended) on revocation
    std::uint64_t signatures_refused = 0;  // device frames refused: bad or missing signature
    std::uint64_t replays_refused = 0;     // signed device frames refused as replays
    std::uint64_t wills_published = 0;     // last wills the bridge published for its clients
    std::uint64_t commands = 0;            // commands accepted (each target counts once)
    std::uint64_t command_retries = 0;     // answered from the idempotency store
    // Outcomes of command targets: succeeded, failed, rejected, timed_out (the first of them).
    std::uint64_t command_outcomes[4] = {};
    std::uint64_t command_latency[ack_latency_buckets] = {};  // to a final state, ms buckets
    std::int64_t command_latency_sum_ms = 0;
    std::uint64_t frames_in[static_cast<std::size_t>(in_kind::count)] = {};
    std::uint64_t frames_out[static_cast<std::size_t>(out_kind::count)] = {};
    std::uint64_t ack_latency[ack_latency_buckets] = {};  // counts per bucket (last: +Inf)
    std::int64_t ack_latency_sum_ms = 0;
    // Gauges, computed by engine::stats():
    std::size_t inflight = 0;  // QoS 1/2 deliveries awaiting acks
    std::size_t backlog = 0;   // QoS 1/2 deliveries waiting for room in a window
    std::size_t backlog_bytes = 0;
    std::size_t held = 0;          // QoS 0 messages held (conflation, maxRate)
    std::size_t congested = 0;     // connected clients over their outgoing budget
    std::size_t queued_bytes = 0;  // queued for connected clients (estimates, see send_budget)
    std::size_t offline_queued = 0;
    std::size_t retained_cached = 0;
    std::size_t parked = 0;
    std::size_t commands_in_flight = 0;
};

// Adds the counters and gauges of `more` (another engine shard's) to `into`. What does not add
// up across shards (whether the broker is up, the filters held upstream, the retained messages
// kept) is left as `into` has it: the caller knows it from the one upstream connection.
void add_shard_stats(engine_stats& into, const engine_stats& more);

// One client's session as operators see it (GET /clients).
struct session_summary {
    std::string client_id;
    std::string remote_address;
    bool connected = false;
    std::size_t subscriptions = 0;
    session_counters counters;
    std::size_t inflight = 0;
    std::size_t backlog = 0;
    std::size_t history = 0;  // deliveries kept for a resume (0 when it cannot resume)
    std::size_t held = 0;
    bool congested = false;
};

}  // namespace mqttws
