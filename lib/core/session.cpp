#include "core/session.hpp"

#include "core/topic.hpp"

namespace mqttws {

session::subscription_ref session::best_match(std::string_view topic, bool confirmed_only) const {
    subscription_ref best = nullptr;
    for (const auto& entry : subscriptions_) {
        if (confirmed_only &&
            (entry.second.upstream == nullptr || !entry.second.upstream->confirmed)) {
            continue;
        }
        if (!topic::matches(entry.first, topic)) continue;
        // Map order is by filter, so the first match at a qos is the smallest filter.
        if (best == nullptr || entry.second.qos > best->second.qos) best = &entry;
    }
    return best;
}

publish_memory* session::recall_publish(const std::string& msgid) {
    const auto it = publishes_.find(msgid);
    return it == publishes_.end() ? nullptr : &it->second;
}

publish_memory& session::remember_publish(const std::string& msgid) {
    const auto [it, inserted] = publishes_.try_emplace(msgid);
    if (inserted) {
        publish_order_.push_back(msgid);
        while (publish_order_.size() > remembered_publishes) {
            // Forget the oldest finished one; one still pending stays until its answer.
            const auto old = publishes_.find(publish_order_.front());
            if (old != publishes_.end() && old->second.pending) break;
            if (old != publishes_.end()) publishes_.erase(old);
            publish_order_.pop_front();
        }
    } else {
        it->second = publish_memory{};
    }
    return it->second;
}

}  // namespace mqttws
