#include "core/outbox.hpp"

namespace mqttws {

void outbox::push(std::shared_ptr<const message_body> body, std::uint8_t qos, delivery_style style,
                  std::int64_t now, delivery_sink& sink) {
    delivery d;
    d.seq = ++last_seq_;
    d.qos = qos;
    d.style = style;
    d.body = std::move(body);
    if (qos > 0) d.msgid = ++last_msgid_;
    if (qos == 0) {
        if (connected_) sink.send(d, false);
        // The history takes this delivery's reference to the body: one atomic count less per
        // delivery than a copy (the bridge always has several threads).
        remember(std::move(d));
        return;
    }
    remember(d);
    backlog_bytes_ += d.body->size();
    backlog_.push_back(std::move(d));
    fill_window(now, sink);
}

std::optional<outbox::acked> outbox::ack(std::uint64_t msgid, std::int64_t now,
                                         delivery_sink& sink) {
    inflight_entry* entry = find_inflight(msgid);
    if (entry == nullptr) return std::nullopt;
    acked done{std::move(entry->what.body), now - entry->sent_at};
    --unacknowledged_;
    while (!inflight_.empty() && inflight_.front().acknowledged())
        inflight_.pop_front();
    if (inflight_.size() > 2 * limits_.window) {
        // A client acks all but an old delivery: keep the ring at most twice the window.
        fifo<inflight_entry> kept;
        for (inflight_entry& e : inflight_)
            if (!e.acknowledged()) kept.push_back(std::move(e));
        inflight_ = std::move(kept);
    }
    fill_window(now, sink);
    return done;
}

outbox::inflight_entry* outbox::find_inflight(std::uint64_t msgid) {
    std::size_t low = 0;  // msgids grow from the front: a binary search
    std::size_t high = inflight_.size();
    while (low < high) {
        const std::size_t mid = low + (high - low) / 2;
        if (inflight_[mid].what.msgid < msgid)
            low = mid + 1;
        else
            high = mid;
    }
    if (low == inflight_.size()) return nullptr;
    inflight_entry& e = inflight_[low];
    return e.what.msgid == msgid && !e.acknowledged() ? &e : nullptr;
}

void outbox::resend_due(std::int64_t now, delivery_sink& sink) {
    if (!connected_) return;
    for (inflight_entry& entry : inflight_) {
        if (!sink.has_room()) return;
        if (entry.acknowledged() || now - entry.sent_at < limits_.retry_ms) continue;
        if (entry.position > sink.written()) continue;  // its earlier copy is still queued
        resend(entry, now, sink);
    }
    fill_window(now, sink);
}

bool outbox::can_resume_from(std::uint64_t last_seq) const {
    if (last_seq > last_seq_ || last_seq < shed_up_to_seq_) return false;
    if (last_seq == last_seq_) return true;
    return !history_.empty() && history_front_seq_ <= last_seq + 1;
}

void outbox::reconnect(std::optional<std::uint64_t> last_seq, std::int64_t now,
                       delivery_sink& sink) {
    connected_ = true;
    // Positions belong to the old connection: nothing of what it held is on the new one.
    for (inflight_entry& entry : inflight_) {
        entry.position = 0;
        entry.sent_at = now - limits_.retry_ms;  // due: resent below, or when there is room
    }
    const bool replay = last_seq && can_resume_from(*last_seq);
    for (inflight_entry& entry : inflight_) {
        if (entry.acknowledged()) continue;
        if (replay && entry.what.seq > *last_seq) continue;  // resent in order below
        if (!sink.has_room()) break;
        resend(entry, now, sink);
    }
    if (replay) {
        // In seq order. A QoS 1/2 delivery that never went out is at the front of the backlog
        // when its turn comes; it goes now if the window has room, else it (and the QoS 1/2
        // ones after it) waits — QoS 0 ones are never held behind them. QoS 0 replay is bounded
        // by the history; QoS 1/2 replay stops when the client is over budget, and what is left
        // is resent (with dup) as it drains.
        const std::size_t first = *last_seq + 1 - history_front_seq_;  // can_resume_from holds
        for (std::size_t index = first; index < history_.size(); ++index) {
            const delivery d = recall(index);
            if (d.qos == 0) {
                sink.send(d, false);
            } else if (inflight_entry* entry = find_inflight(d.msgid)) {
                if (sink.has_room()) resend(*entry, now, sink);
            } else if (!backlog_.empty() && backlog_.front().msgid == d.msgid &&
                       unacknowledged_ < limits_.window && sink.has_room()) {
                send_next_from_backlog(now, sink);
            }
        }
    }
    fill_window(now, sink);
}

void outbox::keep_no_history() {
    limits_.history_messages = 0;
    history_ = fifo<std::shared_ptr<const message_body>>();
    history_runs_ = fifo<delivered_alike>();
    history_bytes_ = 0;
}

std::size_t outbox::shed_backlog(std::size_t max_bytes) {
    std::size_t dropped = 0;
    while (!backlog_.empty() && backlog_bytes_ > max_bytes) {
        shed_up_to_seq_ = backlog_.front().seq;
        backlog_bytes_ -= backlog_.front().body->size();
        backlog_.pop_front();
        ++dropped;
    }
    return dropped;
}

std::optional<std::int64_t> outbox::next_resend() const {
    std::optional<std::int64_t> at;
    for (const inflight_entry& entry : inflight_) {
        if (entry.acknowledged()) continue;
        const std::int64_t due = entry.sent_at + limits_.retry_ms;
        if (!at || due < *at) at = due;
    }
    return at;
}

void outbox::remember(delivery d) {
    if (limits_.history_messages == 0) return;
    if (history_.empty()) history_front_seq_ = d.seq;
    history_bytes_ += d.body->size();
    if (history_.size() < limits_.history_messages) {
        history_.push_back(std::move(d.body));
    } else {
        history_bytes_ -= history_.pop_push(std::move(d.body))->size();  // the oldest makes room
        ++history_front_seq_;
    }
    while (history_bytes_ > limits_.history_bytes && history_.size() > 1) {
        history_bytes_ -= history_.front()->size();
        history_.pop_front();
        ++history_front_seq_;
    }
    forget_runs_before_front();  // first: a history of n entries then has at most n + 1 runs
    if (history_runs_.empty() || !history_runs_[history_runs_.size() - 1].continued_by(d))
        history_runs_.push_back(delivered_alike{d.seq, d.msgid, d.style, d.qos});
}

bool outbox::delivered_alike::continued_by(const delivery& d) const {
    // The msgids follow on by themselves: push() gives every QoS 1/2 delivery the next one.
    return d.qos == qos && d.style.binary == style.binary && d.style.batch_max == style.batch_max &&
           d.style.batch_delay_ms == style.batch_delay_ms;
}

void outbox::forget_runs_before_front() {
    while (history_runs_.size() > 1 && history_runs_[1].first_seq <= history_front_seq_)
        history_runs_.pop_front();
}

delivery outbox::recall(std::size_t index) const {
    delivery d;
    d.seq = history_front_seq_ + index;
    // The run that holds d.seq: the last one that starts at or before it.
    std::size_t low = 0;
    std::size_t high = history_runs_.size();
    while (high - low > 1) {
        const std::size_t mid = low + (high - low) / 2;
        if (history_runs_[mid].first_seq <= d.seq)
            low = mid;
        else
            high = mid;
    }
    const delivered_alike& run = history_runs_[low];
    d.qos = run.qos;
    d.msgid = run.qos == 0 ? 0 : run.first_msgid + (d.seq - run.first_seq);
    d.style = run.style;
    d.body = history_[index];
    return d;
}

void outbox::fill_window(std::int64_t now, delivery_sink& sink) {
    if (!connected_) return;
    while (!backlog_.empty() && unacknowledged_ < limits_.window && sink.has_room())
        send_next_from_backlog(now, sink);
}

void outbox::send_next_from_backlog(std::int64_t now, delivery_sink& sink) {
    delivery d = std::move(backlog_.front());
    backlog_.pop_front();
    backlog_bytes_ -= d.body->size();
    const std::uint64_t position = sink.send(d, false);
    inflight_.push_back(inflight_entry{std::move(d), now, position});
    ++unacknowledged_;
}

void outbox::resend(inflight_entry& entry, std::int64_t now, delivery_sink& sink) {
    entry.sent_at = now;
    ++resends_;
    entry.position = sink.send(entry.what, true);
}

}  // namespace mqttws
