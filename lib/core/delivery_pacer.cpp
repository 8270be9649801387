#include "core/delivery_pacer.hpp"

#include <algorithm>
#include <iterator>
#include <vector>

#include "core/replies.hpp"

namespace mqttws {
namespace {

// A `batch` frame is sent once its messages reach this size, whatever its maxMessages says, so
// that a batch waiting for its delay holds a bounded number of bytes.
constexpr std::size_t max_batch_bytes = 64u << 10;

}  // namespace

// The outbox's view of a session's connection.
class delivery_pacer::session_sink final : public delivery_sink {
  public:
    session_sink(delivery_pacer& p, session& s, action_list& out)
        : pacer_(p), session_(s), out_(out) {}
    std::uint64_t send(const delivery& d, bool dup) override {
        pacer_.send_delivery(session_, d, dup, out_);
        // A batched delivery leaves with its batch: count the batch as handed over already.
        const pacing_state& p = session_.pacing();
        return p.budget.queued_total() + p.batch_bytes;
    }
    bool has_room() const override {
        return !session_.pacing().budget.congested() && !session_.live().closing;
    }
    std::uint64_t written() const override { return session_.pacing().budget.written_total(); }

  private:
    delivery_pacer& pacer_;
    session& session_;
    action_list& out_;
};

// ---------------------------------------------------------------- frames

void delivery_pacer::send(session& s, out_kind kind, frame_ptr frame, action_list& out, bool binary,
                          frame_head head) {
    // Detached: nothing reaches it until a resume. Closing: nothing more is written (what it
    // missed is in its outbox for a resume).
    if (s.connection() == 0 || s.live().closing) return;
    ++s.counters().frames_out;
    ++ctx_.stats.frames_out[static_cast<std::size_t>(kind)];
    const std::size_t bytes = head.size() + frame->size();
    out.push_back(send_frame{s.connection(), std::move(frame), binary, std::move(head)});
    count_outgoing(s, kind, bytes, out);
}

void delivery_pacer::send_error(session& s, errc code, std::string_view message, const msg_id& id,
                                action_list& out, std::string_view topic) {
    ++s.counters().errors;
    send(s, out_kind::error, encode_error(code, message, id, topic), out);
}

bool delivery_pacer::pong_owed(session& s, std::size_t payload_bytes, action_list& out) {
    if (s.live().closing) return false;
    count_outgoing(s, out_kind::pong, payload_bytes, out);
    return !s.live().closing;
}

void delivery_pacer::count_outgoing(session& s, out_kind kind, std::size_t bytes,
                                    action_list& out) {
    send_budget& budget = s.pacing().budget;
    budget.add(bytes, event_);
    if (s.live().app_pings) s.live().last_sent_ms = ctx_.env.steady_ms();
    const std::size_t limit = budget_limit(s);
    if (budget.estimate() <= limit) return;
    if (!budget.congested()) {
        if (measure(s) > limit) enter_congestion(s);
    } else if (const std::size_t hard = 2 * limit + s.pacing().replay_allowance;
               kind != out_kind::message && kind != out_kind::batch && budget.estimate() > hard &&
               measure(s) > hard) {
        // Congested, and answers to its own requests went past twice the budget: it sends and
        // does not read. Without this, it could make the bridge hold any amount of memory
        // within the slow-consumer timeout. Deliveries do not trigger it: while congested only a
        // resume's replay sends them, bounded by the history, and a client must be able to
        // resume from a history larger than its budget (it then has the slow-consumer timeout
        // to take it); the replay's bytes are allowed on top (replay_allowance).
        close_slow(s, out);
    }
}

void delivery_pacer::close_slow(session& s, action_list& out) {
    ++ctx_.stats.slow_consumers;
    s.live().closing = true;
    out.push_back(close_client{s.connection(), close_code::slow_consumer, "Slow consumer"});
}

// ---------------------------------------------------------------- the budget

std::size_t delivery_pacer::budget_limit(const session& s) const {
    const flow_config& flow = ctx_.config.flow;
    return s.authenticated() ? flow.max_queued_bytes
                             : std::min(flow.max_queued_bytes, flow.pre_auth_queued_bytes);
}

std::size_t delivery_pacer::measure(session& s) {
    send_budget& budget = s.pacing().budget;
    budget.measure(ctx_.env.buffered_bytes(s.connection()), event_);
    return budget.estimate();
}

void delivery_pacer::enter_congestion(session& s) {
    send_budget& budget = s.pacing().budget;
    budget.set_congested(true);
    if (budget.over_since_ms() == 0) budget.set_over_since(ctx_.env.steady_ms());
    congested_.insert(&s);
}

void delivery_pacer::leave_congestion(session& s, action_list& out) {
    send_budget& budget = s.pacing().budget;
    budget.set_congested(false);
    congested_.erase(&s);
    s.pacing().replay_allowance = 0;
    if (s.deliveries().backlog_bytes() <= ctx_.config.flow.max_queued_bytes)
        budget.set_over_since(0);
    const std::int64_t now = ctx_.env.steady_ms();
    release_held(s, now, out);
    session_sink sink(*this, s, out);
    s.deliveries().resend_due(now, sink);
}

void delivery_pacer::poll_congested(action_list& out) {
    const std::vector<session*> waiting(congested_.begin(), congested_.end());
    for (session* s : waiting) {
        if (congested_.count(s) == 0) continue;  // ended meanwhile
        if (measure(*s) <= budget_limit(*s) / 2) leave_congestion(*s, out);
    }
}

bool delivery_pacer::slow_consumer(session& s, std::int64_t now) {
    // Over budget: the socket's buffer, or the QoS 1/2 backlog.
    send_budget& budget = s.pacing().budget;
    const bool over =
        budget.congested() || s.deliveries().backlog_bytes() > ctx_.config.flow.max_queued_bytes;
    if (!over) {
        budget.set_over_since(0);
        return false;
    }
    if (budget.over_since_ms() == 0) budget.set_over_since(now);
    if (now - budget.over_since_ms() < ctx_.config.flow.slow_consumer_timeout_ms) return false;
    // A client waiting only for conflatable QoS 0 messages is not closed: it gets the newest of
    // each topic once it drains. Anything else (QoS 1/2, or answers to its own requests) that it
    // has not taken for this long closes it.
    const bool only_conflatable = s.deliveries().backlog() == 0 && !s.pacing().held.empty();
    return !only_conflatable;
}

void delivery_pacer::bound_backlog(session& s, action_list& out) {
    if (s.deliveries().backlog_bytes() <= ctx_.config.flow.max_backlog_bytes) return;
    if (s.connection() != 0 && !s.live().closing) {
        // Hopeless: it has not taken what it was sent, and QoS 1/2 keep coming. It resumes.
        close_slow(s, out);
        return;
    }
    ctx_.stats.backlog_shed += s.deliveries().shed_backlog(ctx_.config.flow.max_backlog_bytes);
}

// ---------------------------------------------------------------- deliveries

void delivery_pacer::deliver(session& s, const std::shared_ptr<const message_body>& body,
                             std::uint8_t qos, const subscription_options& options,
                             action_list& out, std::int64_t now) {
    pacing_state& p = s.pacing();
    const bool congested = p.budget.congested();
    if (qos == 0 && (options.max_rate > 0 || congested)) {
        // QoS 0 may wait: the newest message per topic is kept, an older one replaced.
        if (const auto waiting = p.held.find(body->topic()); waiting != p.held.end()) {
            // One is already held for this topic: the new one takes its place (and its turn),
            // so an older value is never sent after a newer one.
            p.held_bytes += body->size();
            p.held_bytes -= waiting->second.body->size();
            waiting->second.body = body;
            waiting->second.options = options;
            ++ctx_.stats.conflated;
            ++s.counters().conflated;
            if (!congested && waiting->second.due_ms <= now) release_held(s, now, out);
            return;
        }
        std::int64_t due = 0;
        if (options.max_rate > 0) {
            const auto next = p.next_send_by_topic.find(body->topic());
            if (next != p.next_send_by_topic.end() && next->second > now) due = next->second;
        }
        // Held messages are bounded too: one per topic, and no more bytes than the budget.
        const bool no_room_to_hold =
            p.held_bytes + body->size() > ctx_.config.flow.max_queued_bytes;
        if ((congested && !options.conflate && options.max_rate <= 0) ||
            ((due != 0 || congested) && no_room_to_hold)) {
            ++ctx_.stats.dropped;
            ++s.counters().dropped;
            return;
        }
        if (due != 0 || congested) {
            p.held.emplace(body->topic(), held_message{body, options, due});
            p.held_bytes += body->size();
            return;
        }
    }
    if (qos == 0 && options.max_rate > 0) remember_rate(s, body->topic(), options.max_rate, now);
    ++ctx_.stats.deliveries;
    ++s.counters().messages_delivered;
    session_sink sink(*this, s, out);
    s.deliveries().push(body, qos,
                        delivery_style{options.binary, options.batch_max, options.batch_delay_ms},
                        now, sink);
    if (qos > 0) bound_backlog(s, out);
}

void delivery_pacer::remember_rate(session& s, const std::string& topic, double max_rate,
                                   std::int64_t now) {
    auto& next = s.pacing().next_send_by_topic;
    if (next.size() >= max_rate_topics && next.count(topic) == 0) sweep_rates(s, now, true);
    const double interval_ms = std::min(1000.0 / max_rate, 86'400'000.0);  // a day at most
    next[topic] = now + static_cast<std::int64_t>(interval_ms);
}

void delivery_pacer::sweep_rates(session& s, std::int64_t now, bool full) {
    pacing_state& p = s.pacing();
    auto& next = p.next_send_by_topic;
    p.rate_swept_ms = now;
    for (auto it = next.begin(); it != next.end();)
        it = it->second <= now ? next.erase(it) : std::next(it);
    if (!full) return;
    // Still full of topics within their interval: forget half of them. Their next message may
    // then come early, once — the price of a bound on what a client's subscription to
    // ever-new topics can make the bridge remember.
    while (next.size() > max_rate_topics / 2)
        next.erase(next.begin());
}

void delivery_pacer::release_held(session& s, std::int64_t now, action_list& out) {
    pacing_state& p = s.pacing();
    session_sink sink(*this, s, out);
    for (auto it = p.held.begin(); it != p.held.end() && !p.budget.congested();) {
        if (it->second.due_ms > now) {
            ++it;
            continue;
        }
        const held_message h = std::move(it->second);
        it = p.held.erase(it);
        p.held_bytes -= h.body->size();
        if (h.options.max_rate > 0) remember_rate(s, h.body->topic(), h.options.max_rate, now);
        ++ctx_.stats.deliveries;
        ++s.counters().messages_delivered;
        s.deliveries().push(
            h.body, 0,
            delivery_style{h.options.binary, h.options.batch_max, h.options.batch_delay_ms}, now,
            sink);
    }
}

std::shared_ptr<const message_body> delivery_pacer::ack(session& s, std::uint64_t msgid,
                                                        action_list& out) {
    session_sink sink(*this, s, out);
    auto acked = s.deliveries().ack(msgid, ctx_.env.steady_ms(), sink);
    if (!acked) return nullptr;
    // Progress: a client over budget only for its QoS 1/2 backlog is working through it, and
    // the slow-consumer timeout starts again (the backlog itself is bounded: bound_backlog).
    if (!s.pacing().budget.congested()) s.pacing().budget.set_over_since(0);
    std::size_t bucket = 0;
    while (bucket + 1 < ack_latency_buckets && acked->waited_ms > ack_latency_bounds_ms[bucket])
        ++bucket;
    ++ctx_.stats.ack_latency[bucket];
    ctx_.stats.ack_latency_sum_ms += acked->waited_ms;
    return std::move(acked->body);
}

void delivery_pacer::reconnect(session& s, std::optional<std::uint64_t> last_seq,
                               action_list& out) {
    session_sink sink(*this, s, out);
    pacing_state& p = s.pacing();
    const std::uint64_t before = p.budget.queued_total();
    s.deliveries().reconnect(last_seq, ctx_.env.steady_ms(), sink);
    // The replay may pass the budget (the history can hold more); answers that follow it are
    // judged by what they add (count_outgoing) until the client has drained it.
    p.replay_allowance = static_cast<std::size_t>(p.budget.queued_total() - before);
}

void delivery_pacer::send_delivery(session& s, const delivery& d, bool dup, action_list& out) {
    if (dup) ++ctx_.stats.redeliveries;
    delivery_fields fields;
    fields.qos = d.qos;
    fields.msgid = d.msgid;
    fields.seq = s.resumable() ? d.seq : 0;
    fields.dup = dup;
    if (d.style.binary) {
        split_frame frame = d.body->binary(fields);
        send(s, out_kind::message, std::move(frame.shared), out, /*binary=*/true,
             std::move(frame.head));
        return;
    }
    if (d.style.batch_max > 0) {
        // Gathered into one `batch` frame: sent when full (in messages or bytes), or by tick()
        // when the first is due.
        pacing_state& p = s.pacing();
        if (p.batch.empty()) {
            p.batch_max = d.style.batch_max;
            p.batch_due_ms = ctx_.env.steady_ms() + d.style.batch_delay_ms;
        }
        p.batch.push_back(d.body->finish(fields));
        p.batch_bytes += p.batch.back().size();
        p.batch_max = std::min(p.batch_max, d.style.batch_max);
        if (p.batch.size() >= p.batch_max || p.batch_bytes >= max_batch_bytes ||
            d.style.batch_delay_ms == 0) {
            flush_batch(s, out);
        }
        return;
    }
    if (d.qos == 0 && !s.resumable() && !dup) {
        // Nothing of its own in the frame: every such recipient shares all of it.
        send(s, out_kind::message, d.body->shared_qos0(), out);
        return;
    }
    // Its own seq (and msgid): only those bytes are its own (see message_body).
    split_frame frame = d.body->json(fields);
    send(s, out_kind::message, std::move(frame.shared), out, /*binary=*/false,
         std::move(frame.head));
}

void delivery_pacer::flush_batch(session& s, action_list& out) {
    pacing_state& p = s.pacing();
    if (p.batch.empty()) return;
    frame_ptr frame = make_frame(encode_batch(p.batch));
    p.batch.clear();
    p.batch_bytes = 0;
    p.batch_due_ms = 0;
    send(s, out_kind::batch, std::move(frame), out);
}

// ---------------------------------------------------------------- time

void delivery_pacer::tick(session& s, std::int64_t now, action_list& out) {
    pacing_state& p = s.pacing();
    liveness& live = s.live();
    if (!p.held.empty()) release_held(s, now, out);
    if (!p.next_send_by_topic.empty() && now - p.rate_swept_ms >= 1000) sweep_rates(s, now, false);
    if (!p.batch.empty() && p.batch_due_ms <= now) flush_batch(s, out);
    const std::int64_t interval = ctx_.config.flow.ping_interval_ms;
    if (now - live.last_alive_ms >= interval && now - live.last_ping_ms >= interval) {
        live.last_ping_ms = now;
        out.push_back(ping_client{s.connection()});
    }
    if (live.app_pings && now - live.last_sent_ms >= interval) {
        // A client that cannot see WebSocket pings (a browser) learns that the bridge is alive.
        send(s, out_kind::ping, make_frame(encode_app_ping(ctx_.env.wall_ms())), out);
    }
    const auto due = s.deliveries().next_resend();
    if (due && *due <= now) {
        measure(s);  // which earlier copies have left (send_budget positions)
        session_sink sink(*this, s, out);
        s.deliveries().resend_due(now, sink);
    }
}

}  // namespace mqttws
