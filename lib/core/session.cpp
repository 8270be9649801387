#include "core/session.hpp"

#include "core/topic.hpp"

namespace mqttws {

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
