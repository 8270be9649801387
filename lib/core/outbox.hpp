// Everything one client session has been (or is to be) sent, for delivery guarantees:
//
// - every delivery gets the next `seq` of the session (1, 2, 3 …), so a client that reconnects
//   can say what it saw last;
// - deliveries of QoS 1/2 also get a `msgid` and stay in an in-flight window until the client
//   acknowledges them; after `retry_ms` without an ack they are sent again with `dup`; when the
//   window is full, further QoS 1/2 deliveries wait in order in a backlog (never dropped);
// - a bounded history of recent deliveries lets a reconnecting client resume: everything after
//   its `lastSeq` is replayed in order. When the history no longer reaches back that far (it
//   overflowed), resuming is refused and the client re-reads state instead.
//
// While the session has no connection (between a drop and a resume) deliveries are recorded
// but nothing is sent. The outbox never builds frames itself: it hands `delivery`s to a `Send`
// callback, which renders and sends them.
//
// Thread safety: none; owned by the engine's thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>

#include "core/codec.hpp"
#include "core/fifo.hpp"

namespace mqttws {

struct outbox_limits {
    std::size_t window = 64;               // QoS 1/2 deliveries awaiting an ack at once
    std::int64_t retry_ms = 5000;          // resend an unacknowledged delivery after this
    std::size_t history_messages = 1000;   // deliveries kept for resuming
    std::size_t history_bytes = 1u << 20;  // ...and their encoded size (bodies are shared)
};

// How a delivery is framed for its client (from the subscription it came through).
struct delivery_style {
    bool binary = false;
    std::uint16_t batch_max = 0;  // 0: not batched
    std::uint32_t batch_delay_ms = 0;
};

struct delivery {
    std::uint64_t seq = 0;
    std::uint64_t msgid = 0;  // QoS 1/2 only
    std::uint8_t qos = 0;
    delivery_style style;
    std::shared_ptr<const message_body> body;
};

class outbox {
  public:
    explicit outbox(outbox_limits limits) : limits_(limits) {}

    // Records a delivery and, when connected and allowed, sends it: send(delivery, dup).
    template <class Send>
    void push(std::shared_ptr<const message_body> body, std::uint8_t qos, delivery_style style,
              std::int64_t now, Send&& send) {
        delivery d;
        d.seq = ++last_seq_;
        d.qos = qos;
        d.style = style;
        d.body = std::move(body);
        if (qos > 0) d.msgid = ++last_msgid_;
        remember(d);
        if (qos == 0) {
            if (connected_) send(d, false);
            return;
        }
        backlog_bytes_ += d.body->size();
        backlog_.push_back(std::move(d));
        fill_window(now, send);
    }

    // The client acknowledged `msgid`; sends what waited for room. Returns how long the
    // delivery waited for its ack (ms, from its last sending), or nullopt for an unknown id
    // (already acknowledged, or never sent) — harmless, e.g. an ack of a resent copy.
    template <class Send>
    std::optional<std::int64_t> ack(std::uint64_t msgid, std::int64_t now, Send&& send) {
        const auto it = inflight_.find(msgid);
        if (it == inflight_.end()) return std::nullopt;
        const std::int64_t waited = now - it->second.sent_at;
        inflight_.erase(it);
        fill_window(now, send);
        return waited;
    }

    // Resends, with dup, what has waited `retry_ms` for its ack.
    template <class Send>
    void resend_due(std::int64_t now, Send&& send) {
        if (!connected_) return;
        for (auto& [id, entry] : inflight_) {
            if (now - entry.sent_at < limits_.retry_ms) continue;
            entry.sent_at = now;
            ++resends_;
            send(entry.what, true);
        }
    }

    // The connection dropped: keep recording, send nothing.
    void disconnect() { connected_ = false; }

    // Can a client that saw everything up to `last_seq` continue without a gap?
    bool can_resume_from(std::uint64_t last_seq) const {
        if (last_seq > last_seq_) return false;
        if (last_seq == last_seq_) return true;
        return !history_.empty() && history_.front().seq <= last_seq + 1;
    }

    // A new connection took over the session. With a `last_seq` the client can resume from
    // (`can_resume_from`), everything after it is sent again in order; otherwise only the
    // unacknowledged QoS 1/2 deliveries are (QoS 0 ones in between are lost). In-flight
    // deliveries are resent with dup; the backlog then follows as the window allows.
    template <class Send>
    void reconnect(std::optional<std::uint64_t> last_seq, std::int64_t now, Send&& send) {
        connected_ = true;
        const bool replay = last_seq && can_resume_from(*last_seq);
        for (auto& [id, entry] : inflight_) {
            if (replay && entry.what.seq > *last_seq) continue;  // resent in order below
            entry.sent_at = now;
            send(entry.what, true);
        }
        if (replay) {
            // In seq order. A QoS 1/2 delivery that never went out is at the front of the
            // backlog when its turn comes; it goes now if the window has room, else it (and the
            // QoS 1/2 ones after it) waits — QoS 0 ones are never held behind them.
            for (const auto& d : history_) {
                if (d.seq <= *last_seq) continue;
                if (d.qos == 0) {
                    send(d, false);
                } else if (const auto it = inflight_.find(d.msgid); it != inflight_.end()) {
                    it->second.sent_at = now;
                    send(d, true);
                } else if (!backlog_.empty() && backlog_.front().msgid == d.msgid &&
                           inflight_.size() < limits_.window) {
                    send_next_from_backlog(now, send);
                }
            }
        }
        fill_window(now, send);
    }

    // Earliest time resend_due() has work, if anything is in flight.
    std::optional<std::int64_t> next_resend() const {
        std::optional<std::int64_t> at;
        for (const auto& [id, entry] : inflight_) {
            const std::int64_t due = entry.sent_at + limits_.retry_ms;
            if (!at || due < *at) at = due;
        }
        return at;
    }

    std::uint64_t last_seq() const { return last_seq_; }
    std::size_t inflight() const { return inflight_.size(); }
    std::size_t backlog() const { return backlog_.size(); }
    std::size_t backlog_bytes() const { return backlog_bytes_; }
    std::size_t history_size() const { return history_.size(); }
    std::uint64_t resends() const { return resends_; }
    bool connected() const { return connected_; }

  private:
    struct inflight_entry {
        delivery what;
        std::int64_t sent_at = 0;
    };

    void remember(const delivery& d) {
        if (limits_.history_messages == 0) return;
        history_.push_back(d);
        history_bytes_ += d.body->size();
        while (history_.size() > limits_.history_messages ||
               (history_bytes_ > limits_.history_bytes && history_.size() > 1)) {
            history_bytes_ -= history_.front().body->size();
            history_.pop_front();
        }
    }

    // Moves backlog into the window and sends it; nothing moves while disconnected, so the
    // window holds only deliveries that were really sent.
    template <class Send>
    void fill_window(std::int64_t now, Send& send) {
        if (!connected_) return;
        while (!backlog_.empty() && inflight_.size() < limits_.window)
            send_next_from_backlog(now, send);
    }

    template <class Send>
    void send_next_from_backlog(std::int64_t now, Send& send) {
        delivery d = std::move(backlog_.front());
        backlog_.pop_front();
        backlog_bytes_ -= d.body->size();
        send(d, false);
        inflight_.emplace(d.msgid, inflight_entry{std::move(d), now});
    }

    outbox_limits limits_;
    bool connected_ = true;
    std::uint64_t last_seq_ = 0;
    std::uint64_t last_msgid_ = 0;
    fifo<delivery> history_;
    std::size_t history_bytes_ = 0;
    std::map<std::uint64_t, inflight_entry> inflight_;  // by msgid, which grows with seq
    fifo<delivery> backlog_;
    std::size_t backlog_bytes_ = 0;
    std::uint64_t resends_ = 0;
};

}  // namespace mqttws
