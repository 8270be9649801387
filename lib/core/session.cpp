#include "core/session.hpp"

#include "core/topic.hpp"

namespace mqttws {

session::subscription_ref session::best_match(std::string_view topic) const {
    subscription_ref best = nullptr;
    for (const auto& entry : subscriptions_) {
        if (!topic::matches(entry.first, topic)) continue;
        // Map order is by filter, so the first match at a qos is the smallest filter.
        if (best == nullptr || entry.second.qos > best->second.qos) best = &entry;
    }
    return best;
}

}  // namespace mqttws
