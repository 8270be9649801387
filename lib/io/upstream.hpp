// The bridge's one MQTT connection to the broker, as the app sees it.
//
// The app hands it the engine's upstream actions (subscribe, unsubscribe, publish) and gets
// back `upstream_event`s, always on the app's thread, which it feeds to the engine. The Paho
// implementation lives in paho_upstream.cpp; this interface keeps Paho's headers out of the
// app and lets the app be driven by something else (e.g. a test double).
//
// Thread safety: every member function is called from the app's thread; events are delivered
// on that same thread.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <variant>

#include "core/actions.hpp"
#include "core/engine.hpp"

namespace mqttws {

struct upstream_connected_event {
    bool session_present = false;
};
struct upstream_lost_event {
    std::string reason;
};
struct upstream_subscribed_event {
    op_id op = 0;
    int granted = -1;  // SUBACK code: 0..2 granted QoS; >= 0x80 or < 0: refused / failed
};
struct upstream_published_event {
    op_id op = 0;
    std::optional<errc> error;
    std::string message;
};
// The publishes waiting for the MQTT client became too many, or few enough again
// (publish_window.hpp): the engine holds back the clients that publish meanwhile.
struct upstream_congestion_event {
    bool congested = false;
};
using upstream_event =
    std::variant<upstream_connected_event, upstream_lost_event, broker_message,
                 upstream_subscribed_event, upstream_published_event, upstream_congestion_event>;

// The publishes between the bridge and the broker (publish_window.hpp), for /metrics.
struct upstream_stats {
    std::size_t in_client = 0;      // handed to the MQTT client, not yet written or answered
    std::size_t waiting = 0;        // waiting for room in the client
    std::size_t waiting_bytes = 0;  // their topics and payloads
    std::uint64_t refused = 0;      // refused: the wait was full (QoS 0 dropped, 1/2 answered)
    // What the MQTT client's own heap accounting says it holds (Paho C's Heap_get_info, when
    // the library has it); nullopt when unknown.
    std::optional<std::size_t> client_heap_bytes;
};

// Hands one event to the engine (the engine call it stands for), on the app's thread.
void pass_to_engine(upstream_event& event, engine& core, action_list& out);

class upstream {
  public:
    using event_sink = std::function<void(upstream_event&&)>;

    virtual ~upstream() = default;
    // Starts connecting (and keeps reconnecting with backoff until stop()).
    virtual void start() = 0;
    virtual void subscribe(const subscribe_upstream& request) = 0;
    virtual void unsubscribe(const unsubscribe_upstream& request) = 0;
    virtual void publish(publish_upstream&& request) = 0;
    virtual upstream_stats stats() const = 0;
    // Disconnects cleanly, waiting up to `timeout_ms` for in-flight work; no events after it.
    virtual void stop(int timeout_ms) = 0;
};

}  // namespace mqttws
