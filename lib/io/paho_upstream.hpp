// The upstream connection over Eclipse Paho MQTT C++ (async_client).
//
// Paho runs its own threads and calls back on them. Every callback here only copies what it
// got into an inbox and wakes the app's io_context, which drains the inbox and passes each
// event to the sink; no bridge state is touched on a Paho thread. Many messages arriving
// together are drained by one wake-up.
//
// Thread safety: public members from the app's thread only (see upstream.hpp).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "core/engine_config.hpp"
#include "io/upstream.hpp"

namespace asio {
class io_context;
}

namespace mqttws {

struct upstream_options {
    std::string broker_uri = "tcp://127.0.0.1:1883";
    std::string client_id = "mqttws-bridge";
    std::string username;
    std::string password;
    // With broker_session::persistent_session, how long the broker keeps the session (v5).
    std::chrono::seconds session_expiry{3600};
    std::chrono::seconds keepalive{30};
    // The bridge's MQTT will (retained, QoS 1): its status topic says it was lost if it dies
    // without disconnecting (presence.hpp). Empty topic: no will.
    std::string will_topic;
    std::string will_payload;
    std::chrono::milliseconds reconnect_min{250};
    std::chrono::milliseconds reconnect_max{10000};
    // At most this many publishes inside Paho at once; the rest wait in order, up to
    // max_queued_bytes of topics and payloads (publish_window.hpp).
    std::size_t max_inflight = 1000;
    std::size_t max_queued_bytes = 64u << 20;
};

// `session` is the engine's own (engine_config::broker): protocol version and persistence are
// chosen once, for both sides. With persistent_session the broker keeps the session (and the
// QoS >= 1 messages queued in it) across reconnects and bridge restarts: 3.1.1 clean session
// off, v5 clean start off + session expiry.
std::unique_ptr<upstream> make_paho_upstream(asio::io_context& io, upstream_options options,
                                             broker_session session, upstream::event_sink sink);

}  // namespace mqttws
