#include "core/subscriptions.hpp"

#include <algorithm>

namespace mqttws {

std::uint8_t upstream_filter::max_subscriber_qos() const {
    std::uint8_t q = 0;
    for (const auto& s : subscribers)
        q = std::max(q, s.qos);
    return q;
}

subscription_registry::add_result subscription_registry::add(std::string_view filter, session* who,
                                                             std::uint8_t qos) {
    upstream_filter& entry = trie_.get_or_create(filter);
    add_result result;
    result.entry = &entry;
    result.is_first = entry.subscribers.empty();
    if (result.is_first) entry.filter = std::string(filter);

    const auto it = std::find_if(entry.subscribers.begin(), entry.subscribers.end(),
                                 [&](const auto& s) { return s.who == who; });
    if (it == entry.subscribers.end()) {
        entry.subscribers.push_back({who, qos});
    } else {
        it->qos = qos;
    }
    const std::uint8_t wanted = entry.max_subscriber_qos();
    result.qos_changed = !result.is_first && wanted != entry.upstream_qos;
    entry.upstream_qos = wanted;
    return result;
}

subscription_registry::remove_result subscription_registry::remove(std::string_view filter,
                                                                   session* who) {
    remove_result result;
    upstream_filter* entry = trie_.find(filter);
    if (entry == nullptr) return result;
    auto& subs = entry->subscribers;
    const auto it =
        std::find_if(subs.begin(), subs.end(), [&](const auto& s) { return s.who == who; });
    if (it == subs.end()) return result;
    result.removed = true;
    *it = subs.back();  // order of subscribers carries no meaning
    subs.pop_back();
    auto& targets = entry->replay_targets;
    targets.erase(std::remove(targets.begin(), targets.end(), who), targets.end());
    if (subs.empty()) {
        result.was_last = true;
        trie_.erase(filter);
        return result;
    }
    const std::uint8_t wanted = entry->max_subscriber_qos();
    result.qos_changed = wanted != entry->upstream_qos;
    entry->upstream_qos = wanted;
    result.upstream_qos = wanted;
    return result;
}

}  // namespace mqttws
