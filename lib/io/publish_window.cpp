#include "io/publish_window.hpp"

namespace mqttws {
namespace {

std::size_t queued_size(const publish_upstream& r) {
    return r.topic.size() + r.payload.size() + r.response_topic.size() + r.correlation_data.size();
}

}  // namespace

publish_window::waiting_queue* publish_window::next_queue(publish_completions done) {
    if (!window_has_room(done)) return nullptr;
    const bool qos12_may_go = !waiting_qos12_.empty() && broker_has_room(done);
    if (waiting_qos0_.empty()) return qos12_may_go ? &waiting_qos12_ : nullptr;
    // A QoS 0 publish goes unless an older QoS 1/2 one may go first.
    if (qos12_may_go && waiting_qos12_.front().arrival < waiting_qos0_.front().arrival)
        return &waiting_qos12_;
    return &waiting_qos0_;
}

publish_window::verdict publish_window::offer(publish_upstream& r, publish_completions done) {
    // At once if nothing that came before it may go first.
    const bool may_go = r.qos == 0
                            ? next_queue(done) == nullptr && window_has_room(done)
                            : !has_waiting() && window_has_room(done) && broker_has_room(done);
    if (may_go) return verdict::hand_over;
    const std::size_t size = queued_size(r);
    if (waiting_bytes_ + size > max_queued_bytes_) {
        ++refused_;
        return verdict::refuse;
    }
    waiting_bytes_ += size;
    waiting_queue& queue = r.qos == 0 ? waiting_qos0_ : waiting_qos12_;
    queue.push_back({arrivals_++, std::move(r)});
    if (waiting_bytes_ >= max_queued_bytes_ / 2) congested_ = true;
    return verdict::wait;
}

std::optional<publish_upstream> publish_window::next(publish_completions done) {
    waiting_queue* queue = next_queue(done);
    if (queue == nullptr) return std::nullopt;
    publish_upstream r = std::move(queue->front().r);
    queue->pop_front();
    waiting_bytes_ -= queued_size(r);
    if (waiting_bytes_ <= max_queued_bytes_ / 4) congested_ = false;
    return r;
}

std::deque<publish_upstream> publish_window::take_waiting() {
    std::deque<publish_upstream> all;
    auto qos0 = waiting_qos0_.begin();
    auto qos12 = waiting_qos12_.begin();
    while (qos0 != waiting_qos0_.end() || qos12 != waiting_qos12_.end()) {
        const bool take_qos0 = qos12 == waiting_qos12_.end() ||
                               (qos0 != waiting_qos0_.end() && qos0->arrival < qos12->arrival);
        all.push_back(std::move(take_qos0 ? (qos0++)->r : (qos12++)->r));
    }
    waiting_qos0_.clear();
    waiting_qos12_.clear();
    waiting_bytes_ = 0;
    congested_ = false;
    return all;
}

publish_window_stats publish_window::stats(publish_completions done) const {
    return {held(handed_, done.all), waiting_qos0_.size() + waiting_qos12_.size(), waiting_bytes_,
            refused_};
}

}  // namespace mqttws
