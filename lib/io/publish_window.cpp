#include "io/publish_window.hpp"

namespace mqttws {
namespace {

std::size_t queued_size(const publish_upstream& r) {
    return r.topic.size() + r.payload.size() + r.response_topic.size() + r.correlation_data.size();
}

}  // namespace

publish_window::verdict publish_window::offer(publish_upstream& r, publish_completions done) {
    if (waiting_.empty() && has_room(r, done)) return verdict::hand_over;
    const std::size_t size = queued_size(r);
    if (waiting_bytes_ + size > max_queued_bytes_) {
        ++refused_;
        return verdict::refuse;
    }
    waiting_bytes_ += size;
    waiting_.push_back(std::move(r));
    if (waiting_bytes_ >= max_queued_bytes_ / 2) congested_ = true;
    return verdict::wait;
}

std::optional<publish_upstream> publish_window::next(publish_completions done) {
    // In order: a QoS 0 publish behind one that waits for the broker's answers waits too.
    if (waiting_.empty() || !has_room(waiting_.front(), done)) return std::nullopt;
    publish_upstream r = std::move(waiting_.front());
    waiting_.pop_front();
    waiting_bytes_ -= queued_size(r);
    if (waiting_bytes_ <= max_queued_bytes_ / 4) congested_ = false;
    return r;
}

std::deque<publish_upstream> publish_window::take_waiting() {
    std::deque<publish_upstream> all;
    all.swap(waiting_);
    waiting_bytes_ = 0;
    congested_ = false;
    return all;
}

publish_window_stats publish_window::stats(publish_completions done) const {
    return {held(handed_, done.all), waiting_.size(), waiting_bytes_, refused_};
}

}  // namespace mqttws
