// Everything that goes out to clients, and how fast: the one place every frame to a client
// passes through, so that every byte held for a client counts against its budget.
//
// - `send()` queues a frame for a session and counts it (send_budget): over the budget the
//   client is congested until it drains to half of it; answers (not deliveries) past twice the
//   budget close it (4008). The platform is asked what a socket still holds only when the engine's
//   own upper bound goes over the budget.
// - `deliver()` hands a broker message to a session under its subscription's options: QoS 0 may
//   be held (maxRate) or conflated (congested), QoS 1/2 go through the session's outbox, whose
//   window is refilled only while the client is under budget, and whose resends wait until the
//   earlier copy has left the socket. A session's QoS 1/2 backlog is bounded
//   (max_backlog_bytes).
// - Deliveries are framed per the subscription: a JSON `message`, a binary frame, or an entry
//   of a `batch` frame; QoS 0 frames without a seq are shared by every recipient.
// - `tick()` sends what became due (maxRate, batches, resends) and heartbeat pings;
//   `poll_congested()` finds congested clients that drained.
//
// Thread safety: none; the engine's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "core/actions.hpp"
#include "core/engine_context.hpp"
#include "core/message_body.hpp"
#include "core/session.hpp"

namespace mqttws {

class delivery_pacer {
  public:
    // maxRate remembers at most this many topics per client (see sweep_rates).
    static constexpr std::size_t max_rate_topics = 4096;

    explicit delivery_pacer(engine_context& ctx) : ctx_(ctx) {}

    // Every public event handler of the engine starts a new event (see send_budget::measure).
    void begin_event() { ++event_; }

    // ---- frames ----
    // `head`, when given, is written before `frame` in the same WebSocket frame (split_frame).
    void send(session& s, out_kind kind, frame_ptr frame, action_list& out, bool binary = false,
              frame_head head = {});
    void send(session& s, out_kind kind, std::string text, action_list& out) {
        send(s, kind, make_frame(std::move(text)), out);
    }
    // `topic`: the filter or topic the error is about, when the request named several.
    void send_error(session& s, errc code, std::string_view message, const msg_id& id,
                    action_list& out, std::string_view topic = {});
    // `frame` to every authenticated client that has a connection.
    template <class Sessions>
    void broadcast(Sessions& sessions, out_kind kind, const frame_ptr& frame, action_list& out) {
        sessions.for_each_connected([&](session& s) {
            if (s.authenticated()) send(s, kind, frame, out);
        });
    }
    // A WebSocket ping from the client: the pong the edge will queue counts like any frame.
    // False when the client is being closed (then no pong).
    bool pong_owed(session& s, std::size_t payload_bytes, action_list& out);

    // ---- deliveries ----
    // One broker message to `s`, under the options of the subscription it came through.
    // `now`: the event's steady time, when the caller delivers one message to many sessions
    // (the router), so that a fan-out asks the clock once, not once per session.
    void deliver(session& s, const std::shared_ptr<const message_body>& body, std::uint8_t qos,
                 const subscription_options& options, action_list& out, std::int64_t now);
    void deliver(session& s, const std::shared_ptr<const message_body>& body, std::uint8_t qos,
                 const subscription_options& options, action_list& out) {
        deliver(s, body, qos, options, out, ctx_.env.steady_ms());
    }
    // The client acknowledged delivery `msgid`: the window moves on. Returns the message it
    // acknowledged (nullptr for an unknown msgid).
    std::shared_ptr<const message_body> ack(session& s, std::uint64_t msgid, action_list& out);
    // A new connection took `s` over (after its budget was reset): resends what is unacked and,
    // with a `last_seq` the history reaches, replays everything after it (outbox::reconnect).
    void reconnect(session& s, std::optional<std::uint64_t> last_seq, action_list& out);

    // ---- time ----
    // What became due for a connected session in good standing: held messages, a batch,
    // heartbeat pings (a WebSocket ping after the client's silence; a `ping` frame after the
    // bridge's, for clients that asked), resends.
    void tick(session& s, std::int64_t now, action_list& out);
    // Over budget (congested, or its QoS 1/2 backlog over the budget) for longer than the
    // slow-consumer timeout, and not only for want of conflatable QoS 0 messages?
    bool slow_consumer(session& s, std::int64_t now);
    // Clients over their budget, waiting to drain. While there are any, the edge calls
    // poll_congested() often (every millisecond): one back under half its budget gets what was
    // held back for it.
    std::size_t congested_count() const { return congested_.size(); }
    void poll_congested(action_list& out);
    // `s` lost its connection, or ends.
    void forget(session& s) { congested_.erase(&s); }

  private:
    class session_sink;

    void count_outgoing(session& s, out_kind kind, std::size_t bytes, action_list& out);
    std::size_t budget_limit(const session& s) const;
    // Asks the platform what `s`'s connection holds; returns the budget's exact estimate.
    std::size_t measure(session& s);
    void enter_congestion(session& s);
    // `s` drained to half its budget: sends what was held back.
    void leave_congestion(session& s, action_list& out);
    void release_held(session& s, std::int64_t now, action_list& out);
    // maxRate: `topic` was just sent under a subscription with that rate.
    void remember_rate(session& s, const std::string& topic, double max_rate, std::int64_t now);
    // Forgets the topics whose interval is over (each second, from tick()); `full`: also half
    // of the rest when there are still max_rate_topics.
    void sweep_rates(session& s, std::int64_t now, bool full);
    // QoS 1/2 waiting beyond max_backlog_bytes: close a connected client, shed a detached one.
    void bound_backlog(session& s, action_list& out);
    // Renders one delivery for `s` and queues it (the outbox's sink).
    void send_delivery(session& s, const delivery& d, bool dup, action_list& out);
    void flush_batch(session& s, action_list& out);
    void close_slow(session& s, action_list& out);

    engine_context& ctx_;
    std::uint64_t event_ = 0;
    std::unordered_set<session*> congested_;  // connected sessions over their budget
};

}  // namespace mqttws
