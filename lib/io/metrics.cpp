#include "io/metrics.hpp"

#include <cstdio>

#include "io/json_out.hpp"

namespace mqttws {
namespace {

class exposition {
  public:
    void family(const char* name, const char* type, const char* help) {
        out_ += "# HELP mqttws_";
        out_ += name;
        out_ += ' ';
        out_ += help;
        out_ += "\n# TYPE mqttws_";
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
    }
    void sample(const char* name, double value, std::string_view labels = {}) {
        out_ += "mqttws_";
        out_ += name;
        if (!labels.empty()) {
            out_ += '{';
            out_ += labels;
            out_ += '}';
        }
        char buf[40];
        std::snprintf(buf, sizeof buf, " %.17g\n", value);
        out_ += buf;
    }
    void single(const char* name, const char* type, const char* help, double value) {
        family(name, type, help);
        sample(name, value);
    }
    // A histogram over the engine's ms buckets (ack_latency_bounds_ms), in seconds.
    void histogram(const char* name, const char* help,
                   const std::uint64_t (&counts)[ack_latency_buckets], std::int64_t sum_ms) {
        family(name, "histogram", help);
        const std::string bucket = std::string(name) + "_bucket";
        std::uint64_t cumulative = 0;
        for (std::size_t b = 0; b < ack_latency_buckets; ++b) {
            cumulative += counts[b];
            char le[32];
            if (b + 1 < ack_latency_buckets) {
                std::snprintf(le, sizeof le, "le=\"%g\"",
                              static_cast<double>(ack_latency_bounds_ms[b]) / 1000.0);
            } else {
                std::snprintf(le, sizeof le, "le=\"+Inf\"");
            }
            sample(bucket.c_str(), static_cast<double>(cumulative), le);
        }
        sample((std::string(name) + "_sum").c_str(), static_cast<double>(sum_ms) / 1000.0);
        sample((std::string(name) + "_count").c_str(), static_cast<double>(cumulative));
    }
    std::string take() { return std::move(out_); }

  private:
    std::string out_;
};

double num(std::uint64_t v) {
    return static_cast<double>(v);
}

}  // namespace

std::string render_metrics(const engine_stats& e, const connection_counters& server,
                           const memory_stats& memory, const std::vector<io_thread_stats>& threads,
                           const upstream_stats& upstream) {
    exposition x;
    if (!threads.empty()) {
        x.family("thread_connections", "gauge",
                 "WebSockets each thread serves (--threads > 1: io-0…, and the engine's thread, "
                 "which serves them all).");
        for (const auto& t : threads)
            x.sample("thread_connections", num(t.connections), "thread=\"" + t.name + "\"");
        x.family("thread_loop_lag_seconds", "gauge",
                 "How long the thread's last probe (every 0.5 s) waited from its post to its run.");
        for (const auto& t : threads)
            x.sample("thread_loop_lag_seconds", t.loop_lag_ms / 1000.0,
                     "thread=\"" + t.name + "\"");
    }
    x.single("connections", "gauge", "Open WebSocket connections.", num(e.connections));
    x.single("connections_total", "counter", "WebSocket connections accepted.",
             num(server.accepted));
    x.single("connections_refused_total", "counter",
             "WebSocket upgrades refused (origin, --max-connections, per-address limits, "
             "protocol version).",
             num(server.refused));
    x.single("pending_connections", "gauge",
             "Sockets not upgraded to WebSocket yet (handshakes, HTTP requests).",
             num(server.pending));
    x.single("sockets_refused_total", "counter",
             "Sockets closed at once: --max-pending-connections, --max-connections-per-ip, or "
             "shed while out of file descriptors.",
             num(server.sockets_refused));
    x.single("accept_failures_total", "counter",
             "Failed accept() calls, e.g. out of file descriptors (the bridge backs off).",
             num(server.accept_failures));
    x.single("sessions", "gauge", "Client sessions, including dropped ones waiting to resume.",
             num(e.sessions));
    x.single("auth_failures_total", "counter", "Failed authentications.", num(e.auth_failures));
    x.single("denied_total", "counter", "Publishes and subscriptions refused by the ACL.",
             num(e.denied));

    x.family("frames_in_total", "counter", "Frames received from clients, by type.");
    for (std::size_t k = 0; k < static_cast<std::size_t>(in_kind::count); ++k) {
        x.sample("frames_in_total", num(e.frames_in[k]),
                 "type=\"" + std::string(name(static_cast<in_kind>(k))) + "\"");
    }
    x.family("frames_out_total", "counter", "Frames sent to clients, by type.");
    for (std::size_t k = 0; k < static_cast<std::size_t>(out_kind::count); ++k) {
        x.sample("frames_out_total", num(e.frames_out[k]),
                 "type=\"" + std::string(name(static_cast<out_kind>(k))) + "\"");
    }

    x.single("upstream_up", "gauge", "1 while the broker connection is up.", e.upstream_up ? 1 : 0);
    x.single("upstream_connects_total", "counter",
             "Broker connections made (the first and reconnects).", num(e.upstream_connects));
    x.single("upstream_publishes_in_client", "gauge",
             "Publishes handed to the MQTT client (Paho) and not yet written (QoS 0) or answered "
             "(QoS 1/2); at most --upstream-inflight.",
             num(upstream.in_client));
    x.single("upstream_publishes_waiting", "gauge",
             "Publishes waiting for room in the MQTT client, in order.", num(upstream.waiting));
    x.single("upstream_publishes_waiting_bytes", "gauge",
             "Topics and payloads of the waiting publishes; at most --upstream-queue-bytes.",
             num(upstream.waiting_bytes));
    x.single("upstream_publishes_refused_total", "counter",
             "Publishes refused because the wait was full: QoS 0 dropped, QoS 1/2 answered "
             "rate_limited.",
             num(upstream.refused));
    if (upstream.client_heap_bytes) {
        x.single("upstream_client_heap_bytes", "gauge",
                 "Heap the MQTT client (Paho C) holds by its own count.",
                 num(*upstream.client_heap_bytes));
    }
    x.single("filters", "gauge", "Filters subscribed at the broker for clients.", num(e.filters));
    x.single("messages_in_total", "counter", "Messages received from the broker.",
             num(e.messages_in));
    x.single("messages_local_total", "counter",
             "Messages published through this bridge and delivered to its own clients directly "
             "(MQTT 5 local fan-out).",
             num(e.messages_local));
    x.single("messages_out_total", "counter", "Deliveries of messages to clients.",
             num(e.deliveries));
    x.single("messages_redelivered_total", "counter",
             "QoS 1/2 deliveries resent for want of an ack.", num(e.redeliveries));
    x.single("messages_conflated_total", "counter",
             "QoS 0 deliveries replaced by a newer one on the same topic (slow client, maxRate).",
             num(e.conflated));
    x.single("messages_dropped_total", "counter",
             "QoS 0 deliveries dropped (over budget, conflation off).", num(e.dropped));
    x.single("publishes_total", "counter", "Client publishes relayed to the broker.",
             num(e.publishes));
    x.single("publishes_dropped_total", "counter",
             "QoS 0 publishes dropped while the broker was down.", num(e.publishes_dropped));
    x.single("publishes_refused_total", "counter", "QoS 1/2 publishes refused: offline queue full.",
             num(e.publishes_refused));
    x.single("publishers_paused_total", "counter",
             "Times a publishing client was not read for a while: the publishes waiting for the "
             "MQTT client had reached half of --upstream-queue-bytes (backpressure).",
             num(e.publishers_paused));
    x.single("publish_duplicates_total", "counter",
             "QoS 2 resends answered without publishing again.", num(e.publish_duplicates));
    x.single("rate_limited_total", "counter", "Publishes refused by the per-client rate limit.",
             num(e.rate_limited));
    x.single("slow_consumers_total", "counter", "Clients closed with 4008 (slow consumer).",
             num(e.slow_consumers));
    x.single("messages_shed_total", "counter",
             "QoS 1/2 deliveries dropped from a session nobody read from (--max-backlog-bytes).",
             num(e.backlog_shed));
    x.single("heartbeat_timeouts_total", "counter", "Clients closed with 4001 (heartbeat timeout).",
             num(e.heartbeat_timeouts));
    x.single("token_expiries_total", "counter",
             "Clients closed with 4401 because their token expired.", num(e.token_expiries));
    x.single("token_refreshes_total", "counter", "Tokens replaced by a refresh while connected.",
             num(e.token_refreshes));
    x.single("revoked_total", "counter",
             "Clients closed (or sessions ended) because a reload revoked their credentials.",
             num(e.revoked));
    x.single("signatures_refused_total", "counter",
             "Device frames refused: the signature is missing or does not verify.",
             num(e.signatures_refused));
    x.single("replays_refused_total", "counter",
             "Signed device frames refused: outside the replay window or a nonce seen before.",
             num(e.replays_refused));
    x.single("resumes_total", "counter", "Sessions resumed by a new connection.", num(e.resumes));
    x.single("resumes_with_gap_total", "counter",
             "Resumes that could not replay everything (resumed:false).", num(e.resumes_with_gap));
    x.single("sessions_evicted_total", "counter",
             "Sessions waiting for a resume ended early: more than --max-detached-sessions waited.",
             num(e.sessions_evicted));

    x.single("inflight_messages", "gauge", "QoS 1/2 deliveries awaiting the client's ack.",
             num(e.inflight));
    x.single("backlog_messages", "gauge",
             "QoS 1/2 deliveries waiting for room in a client's window.", num(e.backlog));
    x.single("backlog_bytes", "gauge", "Bytes of those waiting deliveries.", num(e.backlog_bytes));
    x.single("held_messages", "gauge", "QoS 0 messages held for slow or rate-limited clients.",
             num(e.held));
    x.single("queued_bytes", "gauge", "Bytes queued on WebSocket connections, not yet written.",
             num(server.buffered_bytes));
    x.single("congested_clients", "gauge", "Clients over their outgoing budget.", num(e.congested));
    x.single("offline_queued_publishes", "gauge",
             "QoS 1/2 publishes held while the broker is down.", num(e.offline_queued));
    x.single("retained_cached", "gauge", "Retained messages the bridge holds for joining clients.",
             num(e.retained_cached));

    x.single("process_resident_bytes", "gauge", "Resident memory of the bridge process.",
             num(memory.resident_bytes));
    x.single("heap_free_bytes", "gauge",
             "Bytes free in malloc's arenas at the last check (given back above 8 MiB).",
             num(memory.heap_free_bytes));
    x.single("memory_trims_total", "counter", "Times freed memory was given back (malloc_trim).",
             num(memory.trims));
    x.single("memory_returned_bytes_total", "counter",
             "Resident memory given back to the system by those trims.",
             num(memory.returned_bytes));

    x.single("wills_published_total", "counter", "Last wills published for clients.",
             num(e.wills_published));
    x.single("commands_total", "counter", "Command targets accepted (a command to 40 devices: 40).",
             num(e.commands));
    x.single("command_retries_total", "counter",
             "Commands answered from the idempotency store instead of being run again.",
             num(e.command_retries));
    x.single("commands_in_flight", "gauge", "Commands waiting for an outcome.",
             num(e.commands_in_flight));
    x.family("command_outcomes_total", "counter",
             "Command targets by outcome (timed_out counts when the timeout is reached).");
    static constexpr const char* outcomes[] = {"succeeded", "failed", "rejected", "timed_out"};
    for (std::size_t i = 0; i < 4; ++i) {
        x.sample("command_outcomes_total", num(e.command_outcomes[i]),
                 std::string("outcome=\"") + outcomes[i] + "\"");
    }
    x.histogram("ack_latency_seconds", "From sending a QoS 1/2 delivery to the client's ack.",
                e.ack_latency, e.ack_latency_sum_ms);
    x.histogram("command_duration_seconds",
                "From sending a command to a device to its final state.", e.command_latency,
                e.command_latency_sum_ms);
    return x.take();
}

std::string render_clients(const std::vector<session_summary>& sessions) {
    json_out out;
    out.open_array("clients");
    for (const auto& s : sessions) {
        out.open_object()
            .field("clientId", s.client_id)
            .field("remote", s.remote_address)
            .field("connected", s.connected)
            .field("subscriptions", std::uint64_t{s.subscriptions})
            .field("delivered", s.counters.messages_delivered)
            .field("conflated", s.counters.conflated)
            .field("dropped", s.counters.dropped)
            .field("publishes", s.counters.publishes)
            .field("errors", s.counters.errors)
            .field("framesIn", s.counters.frames_in)
            .field("framesOut", s.counters.frames_out)
            .field("inflight", std::uint64_t{s.inflight})
            .field("backlog", std::uint64_t{s.backlog})
            .field("history", std::uint64_t{s.history})
            .field("held", std::uint64_t{s.held})
            .field("congested", s.congested)
            .close_object();
    }
    out.close_array();
    return out.line();
}

std::string render_health(const engine_stats& s, std::string_view version) {
    return json_out()
        .field("status", s.upstream_up ? "ok" : "unavailable")
        .field("upstream", s.upstream_up ? "connected" : "disconnected")
        .field("clients", std::uint64_t{s.connections})
        .field("sessions", std::uint64_t{s.sessions})
        .field("filters", std::uint64_t{s.filters})
        .field("upstreamConnects", std::uint64_t{s.upstream_connects})
        .field("version", version)
        .line();
}

}  // namespace mqttws
