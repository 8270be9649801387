// The filters the bridge holds at the broker on behalf of its clients, with reference counts.
//
// Every client subscription is registered here under its filter. `add()` says whether the
// filter is new (so the engine subscribes upstream) and `remove()` whether the last subscriber
// left (so the engine unsubscribes upstream) — Centrifuge's hub.addSub shape. The QoS the bridge
// asks the broker for is the highest any subscriber of the filter asked for; `add()`/`remove()`
// report when that changes. Incoming broker messages are routed with `match()`, which walks a
// topic trie and so costs the same whether the bridge holds ten filters or ten thousand.
//
// Thread safety: none; owned by the engine's thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/topic_trie.hpp"

namespace mqttws {

class session;

// One filter the bridge holds (or is about to hold) at the broker, and who wants it.
struct upstream_filter {
    struct subscriber {
        session* who = nullptr;
        std::uint8_t qos = 0;
    };
    std::string filter;
    std::vector<subscriber> subscribers;
    std::uint8_t upstream_qos = 0;  // max over subscribers: what the bridge asks the broker for
    int granted_qos = -1;           // from the broker's last SUBACK; -1 before the first one

    // Upstream state, kept by the engine.
    std::uint32_t subscription_id = 0;  // MQTT v5 subscription identifier tagging its messages
    bool confirmed = false;             // the broker has acknowledged a SUBSCRIBE for it
    std::uint64_t last_subscribe_op = 0;

    // MQTT 3.1.1 only: retained messages the broker replays after a SUBACK are routed to the
    // clients that caused that SUBSCRIBE (`replay_targets`) until `replay_until_ms` (engine.hpp).
    std::vector<session*> replay_targets;
    std::int64_t replay_until_ms = 0;

    std::uint8_t max_subscriber_qos() const;
};

class subscription_registry {
  public:
    struct add_result {
        upstream_filter* entry = nullptr;
        bool is_first = false;     // no one held this filter before: subscribe upstream
        bool qos_changed = false;  // upstream_qos went up: subscribe again with it
    };
    struct remove_result {
        bool removed = false;      // `who` was subscribed to `filter`
        bool was_last = false;     // nobody is left: unsubscribe upstream (entry is gone)
        bool qos_changed = false;  // upstream_qos went down: subscribe again with it
        std::uint8_t upstream_qos = 0;
    };

    // Adds `who` to `filter` with `qos`, or updates its qos if it is already there.
    add_result add(std::string_view filter, session* who, std::uint8_t qos);
    remove_result remove(std::string_view filter, session* who);

    upstream_filter* find(std::string_view filter) { return trie_.find(filter); }
    std::size_t filter_count() const { return trie_.size(); }

    // visit(upstream_filter&) for every held filter matching topic name `topic`.
    template <class Visit>
    void match(std::string_view topic, Visit&& visit) {
        trie_.match(topic, visit);
    }
    template <class Visit>
    void for_each(Visit&& visit) {
        trie_.for_each(visit);
    }

  private:
    topic_trie<upstream_filter> trie_;
};

}  // namespace mqttws
