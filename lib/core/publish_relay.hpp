// Client publishes on their way to the broker: the `publish`, `batch`, binary and device-report
// frames, checked (topic, ACL, rate limit) and relayed over the one upstream connection, with
// their QoS bookkeeping and their answers.
//
// - QoS 0 is fire-and-forget: no answer unless something was wrong. QoS 1/2 are answered with
//   one `ack` once the broker confirmed (PUBACK / PUBCOMP) or failed.
// - QoS 2 exactly once: a resend of a QoS 2 publish (same msgid, `dup`) is answered, not
//   published again (the session's publish memory).
// - Local fan-out: with MQTT 5 the bridge subscribes with No Local, so the broker does not send
//   back what the bridge published; a copy goes to the bridge's own subscribers instead (QoS 0 at
//   once, QoS 1/2 once the broker accepted it) — one trip through Paho instead of two.
// - While the broker is unreachable QoS 1/2 publishes wait in a bounded offline queue and go out
//   in order when it is back; QoS 0 ones are dropped. A publish in flight when the broker
//   connection went away is sent again on the next one, ahead of later publishes; in flight on
//   three lost connections in a row, it is answered `unavailable`.
// - Backpressure: while the publishes waiting for the broker connection are too many
//   (upstream_congestion), a client that publishes is not read any more until they are few
//   enough again. Its TCP window fills and it slows down to the broker connection's pace,
//   instead of its publishes being dropped (QoS 0) or refused (QoS 1/2) at the queue's bound.
//
// Thread safety: none; the engine's thread.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/delivery_pacer.hpp"
#include "core/engine_context.hpp"
#include "core/session_directory.hpp"

namespace mqttws {

class publish_relay {
  public:
    publish_relay(engine_context& ctx, session_directory& sessions, delivery_pacer& pacer)
        : ctx_(ctx), sessions_(sessions), pacer_(pacer) {}

    void handle(session& s, publish_request& r, action_list& out);
    void handle(session& s, batch_request& r, action_list& out);
    void handle(session& s, device_report_request& r, action_list& out);
    // Answers a publish that was refused before it could be relayed (ack error for QoS 1/2 with
    // a msgid, else an error frame), and settles its QoS 2 memory.
    void refuse(session& s, std::uint8_t qos, const msg_id& reply_to, errc code,
                std::string_view message, action_list& out);

    // A publish of the bridge's own — a last will, presence, a command, a device's answer to
    // one — decided elsewhere (no client ACL or rate limit here), with the same offline queue
    // and retries as a client's. `tag` (non-zero) comes back from upstream_published.
    void publish_for_bridge(publish_upstream request, std::uint64_t tag, action_list& out);

    // What became of a tagged publish of the bridge's own.
    struct bridge_publish_done {
        std::uint64_t tag = 0;
        std::optional<errc> error;
        std::string message;
    };
    // qos >= 1 publish confirmed (PUBACK / PUBCOMP: no error) or failed. Returns the outcome
    // when it was a tagged publish of the bridge's own.
    std::optional<bridge_publish_done> upstream_published(op_id op, std::optional<errc> error,
                                                          std::string_view message,
                                                          action_list& out);
    // The broker connection is (still, or again) up: what waited goes out, in order.
    void flush(action_list& out);
    // See "Backpressure" above: whether the broker connection is congested; `s` sent a frame
    // that publishes meanwhile (stops reading it, once); it is no longer congested (resumes them).
    bool upstream_congested() const { return upstream_congested_; }
    void pause_reading_of(session& s, action_list& out);
    void upstream_congestion(bool congested, action_list& out);

    std::size_t offline_queued() const { return offline_queue_.size(); }

  private:
    struct pending_publish {
        session_key owner{};  // who published it
        msg_id reply_to;      // empty: nobody waits for an ack
        publish_upstream request;
        int attempts = 0;                      // how many broker connections it was sent on
        std::uint64_t sent_on_connection = 0;  // upstream_connects when last sent
        std::uint64_t tag = 0;                 // a publish of the bridge's own (see above)
    };

    void publish(session& s, std::string topic, std::string payload, std::uint8_t qos, bool retain,
                 const msg_id& reply_to, action_list& out);
    void publish_now(pending_publish p, action_list& out);
    // Local fan-out (MQTT 5, No Local): a copy of `p` for this bridge's own subscribers.
    void loop_back(const publish_upstream& p);
    void queue_offline(pending_publish p);
    // A publish whose broker connection went away before the broker confirmed it: held with the
    // offline queue, in front of everything published after it, until the next connection.
    void queue_retry(pending_publish p);
    void answer(session& s, const msg_id& reply_to, std::optional<errc> error,
                std::string_view message, action_list& out);
    // The QoS 2 publish `reply_to` of `s` has its answer: resends get it from now on.
    publish_memory* settle_qos2(session& s, const msg_id& reply_to, std::optional<errc> error,
                                std::string_view message);
    bool audited_topic(std::string_view topic) const;

    engine_context& ctx_;
    session_directory& sessions_;
    delivery_pacer& pacer_;
    std::unordered_map<op_id, pending_publish> pending_publishes_;
    std::deque<pending_publish> offline_queue_;
    std::size_t offline_queue_bytes_ = 0;
    bool upstream_congested_ = false;
    std::vector<connection_id> paused_;  // not read until the congestion clears
};

}  // namespace mqttws
