// Per-client state: who the client is, what it subscribed to, and its counters.
//
// One `session` per WebSocket connection, owned by the engine and keyed by the edge's
// `session_id`. The subscription registry points at sessions, so a session is removed from
// the registry before it is destroyed (engine::client_closed does both).
//
// Thread safety: none; owned by the engine's thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/actions.hpp"
#include "core/codec.hpp"

namespace mqttws {

struct client_subscription {
    std::uint8_t qos = 0;
    // Set while the client waits for its `suback`: the request's msgid, answered when the
    // upstream operation `waiting_op` is confirmed by the broker (0: not yet sent upstream).
    std::optional<msg_id> pending_suback;
    op_id waiting_op = 0;
};

struct session_counters {
    std::uint64_t frames_in = 0;
    std::uint64_t frames_out = 0;
    std::uint64_t messages_delivered = 0;
    std::uint64_t publishes = 0;
    std::uint64_t errors = 0;
};

class session {
  public:
    using subscription_map = std::map<std::string, client_subscription, std::less<>>;
    using subscription_ref = const subscription_map::value_type*;

    session(session_id id, std::string remote_address)
        : id_(id), remote_address_(std::move(remote_address)) {}

    session_id id() const { return id_; }
    const std::string& remote_address() const { return remote_address_; }

    bool authenticated() const { return authenticated_; }
    const std::string& client_id() const { return client_id_; }
    bool is_device() const { return is_device_; }
    // The topic a device receives `control` frames on (empty unless is_device()).
    const std::string& control_topic() const { return control_topic_; }
    void authenticate(std::string client_id, bool is_device, std::string control_topic) {
        authenticated_ = true;
        client_id_ = std::move(client_id);
        is_device_ = is_device;
        control_topic_ = std::move(control_topic);
    }

    subscription_map& subscriptions() { return subscriptions_; }
    const subscription_map& subscriptions() const { return subscriptions_; }

    // Of this client's filters that match `topic`, the one a delivery goes out under: the
    // highest qos, then the smallest filter. The choice is deterministic so that when the broker
    // sends one copy of a message per matching upstream subscription (MQTT v5), the client
    // receives exactly the copy of its chosen filter: once, at the best qos it asked for.
    subscription_ref best_match(std::string_view topic) const;

    // Delivery ids for qos >= 1 messages, unique within this session.
    std::uint64_t next_delivery_id() { return next_delivery_id_++; }

    session_counters& counters() { return counters_; }
    const session_counters& counters() const { return counters_; }

    // Fan-out scratch: the broker message this session was last considered for, so that one
    // message matching several filters of the client is delivered once.
    std::uint64_t last_fanout = 0;

  private:
    session_id id_;
    std::string remote_address_;
    bool authenticated_ = false;
    std::string client_id_;
    bool is_device_ = false;
    std::string control_topic_;
    subscription_map subscriptions_;
    std::uint64_t next_delivery_id_ = 1;
    session_counters counters_;
};

}  // namespace mqttws
