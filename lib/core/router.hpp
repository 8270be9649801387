// Broker messages to the clients they are for: which held filters a copy of a message was sent
// for, which clients hold those filters, and under which of each client's filters it goes out
// — so that every client receives each message once, at the best QoS it asked for.
//
// - MQTT v5: Mosquitto sends one copy of a message per matching upstream subscription, tagged
//   with its subscription identifier. A copy goes only to the clients of its filter, and a
//   client holding several matching filters takes only the copy of its `best_match` filter
//   among those the broker confirmed.
// - MQTT 3.1.1: the broker sends one untagged copy; the topic is matched against every held
//   filter (topic_trie). A retained message goes only to the clients in the filter's replay
//   window (upstream_subscriptions.hpp).
// A message is rendered once (message_body) and shared by its recipients; a device's own
// control topic is rendered as a `control` frame, or a `command` frame for a command
// (command_desk). A message for the bridge's own subscriptions is not delivered: route() says so
// and the engine takes it (presence, answers to commands).
//
// Thread safety: none; the engine's thread.
#pragma once

#include <cstdint>
#include <vector>

#include "core/broker_message.hpp"
#include "core/commands.hpp"
#include "core/delivery_pacer.hpp"
#include "core/engine_context.hpp"
#include "core/upstream_subscriptions.hpp"

namespace mqttws {

class router {
  public:
    router(engine_context& ctx, upstream_subscriptions& subscriptions, delivery_pacer& pacer,
           command_desk& commands)
        : ctx_(ctx), subscriptions_(subscriptions), pacer_(pacer), commands_(commands) {}

    // Delivers `m` to its clients; true when it is (also) for the bridge's own subscriptions.
    // `subscription_ids`: those of the held filters it was sent for (m.subscription_ids, or an
    // engine shard's own, broker_hub.hpp); none: every held filter it matches (MQTT 3.1.1, and
    // a message published through this bridge: local fan-out).
    bool route(const broker_message& m, const std::vector<std::uint32_t>& subscription_ids,
               action_list& out);

  private:
    struct target {
        session* who;
        std::uint8_t qos;
        const subscription_options* options;
    };

    // How many targets ahead of its delivery a session's history slots are prefetched (and twice
    // that, where they are): for the fetch to arrive while the deliveries in between run. 4 and 16
    // measured alike (engine bench, 10,000 subscribers).
    static constexpr std::size_t prefetch_distance = 8;

    engine_context& ctx_;
    upstream_subscriptions& subscriptions_;
    delivery_pacer& pacer_;
    command_desk& commands_;
    std::uint64_t fanout_serial_ = 0;
    // Scratch, kept to avoid reallocating per message.
    std::vector<target> targets_;
    std::vector<upstream_filter*> routed_filters_;
};

}  // namespace mqttws
