// The filters the bridge holds at the broker on behalf of its clients, with reference counts.
//
// Every client subscription is registered here under its filter. `add()` says whether the
// filter is new (so the bridge subscribes upstream) and `remove()` whether the last subscriber
// left (so it unsubscribes upstream) — Centrifuge's hub.addSub shape. The QoS the bridge asks
// the broker for is the highest any subscriber of the filter asked for; `add()`/`remove()`
// report when that changes. Incoming broker messages are routed with `match()`, which walks a
// topic trie and so costs the same whether the bridge holds ten filters or ten thousand.
//
// The registry knows filters, subscribers and QoS only. What the bridge keeps per filter about
// the broker (subscription ids, confirmations) is the `State` of its owner
// (upstream_subscriptions), carried in each entry but never looked at here.
//
// Thread safety: none; owned by the engine's thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/topic_trie.hpp"

namespace mqttws {

class session;

// One filter the bridge holds (or is about to hold) at the broker, and who wants it.
template <class State>
struct registered_filter {
    struct subscriber {
        session* who = nullptr;
        std::uint8_t qos = 0;
    };
    std::string filter;
    std::vector<subscriber> subscribers;
    std::uint8_t upstream_qos = 0;  // max over subscribers: what the bridge asks the broker for
    State state;                    // the owner's (see above)

    std::uint8_t max_subscriber_qos() const {
        std::uint8_t q = 0;
        for (const auto& s : subscribers)
            q = std::max(q, s.qos);
        return q;
    }
};

template <class State>
class subscription_registry {
  public:
    using filter_entry = registered_filter<State>;

    struct add_result {
        filter_entry* entry = nullptr;
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
    add_result add(std::string_view filter, session* who, std::uint8_t qos) {
        filter_entry& e = trie_.get_or_create(filter);
        add_result result;
        result.entry = &e;
        result.is_first = e.subscribers.empty();
        if (result.is_first) e.filter = std::string(filter);
        const auto it = std::find_if(e.subscribers.begin(), e.subscribers.end(),
                                     [&](const auto& s) { return s.who == who; });
        if (it == e.subscribers.end()) {
            e.subscribers.push_back({who, qos});
        } else {
            it->qos = qos;
        }
        const std::uint8_t wanted = e.max_subscriber_qos();
        result.qos_changed = !result.is_first && wanted != e.upstream_qos;
        e.upstream_qos = wanted;
        return result;
    }

    // Removes `who` from `filter`. `before_erase(filter_entry&)` runs when `who` was the last
    // subscriber, just before the entry is destroyed.
    template <class BeforeErase>
    remove_result remove(std::string_view filter, session* who, BeforeErase before_erase) {
        remove_result result;
        filter_entry* e = trie_.find(filter);
        if (e == nullptr) return result;
        auto& subs = e->subscribers;
        const auto it =
            std::find_if(subs.begin(), subs.end(), [&](const auto& s) { return s.who == who; });
        if (it == subs.end()) return result;
        result.removed = true;
        *it = subs.back();  // order of subscribers carries no meaning
        subs.pop_back();
        if (subs.empty()) {
            result.was_last = true;
            before_erase(*e);
            trie_.erase(filter);
            return result;
        }
        const std::uint8_t wanted = e->max_subscriber_qos();
        result.qos_changed = wanted != e->upstream_qos;
        e->upstream_qos = wanted;
        result.upstream_qos = wanted;
        return result;
    }
    remove_result remove(std::string_view filter, session* who) {
        return remove(filter, who, [](filter_entry&) {});
    }

    filter_entry* find(std::string_view filter) { return trie_.find(filter); }
    std::size_t filter_count() const { return trie_.size(); }

    // visit(filter_entry&) for every held filter matching topic name `topic`.
    template <class Visit>
    void match(std::string_view topic, Visit&& visit) {
        trie_.match(topic, visit);
    }
    template <class Visit>
    void for_each(Visit&& visit) {
        trie_.for_each(visit);
    }

  private:
    topic_trie<filter_entry> trie_;
};

}  // namespace mqttws
