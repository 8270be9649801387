#include "core/publish_relay.hpp"

#include <algorithm>

#include "core/replies.hpp"

namespace mqttws {
namespace {

// A publish that was in flight on this many lost broker connections is answered with an error:
// it may be what makes the broker drop the connection, and it must not do so forever.
constexpr int max_publish_attempts = 3;

std::size_t bytes_of(const publish_upstream& p) {
    return p.topic.size() + p.payload.size();
}

}  // namespace

// ---------------------------------------------------------------- client frames

void publish_relay::handle(session& s, publish_request& r, action_list& out) {
    if (auto problem = topic::check_name(r.topic, ctx_.config.topic_limits)) {
        refuse(s, r.qos, r.id, problem->too_large ? errc::too_large : errc::bad_request,
               problem->message, out);
        return;
    }
    if (r.qos == 2) {
        // Exactly once: a resend of a QoS 2 publish (same msgid) is answered, not published again.
        if (publish_memory* m = s.recall_publish(r.id.json)) {
            if (m->pending) {
                ++m->extra_acks;
                ++ctx_.stats.publish_duplicates;
                return;
            }
            if (r.dup) {
                ++ctx_.stats.publish_duplicates;
                answer(s, r.id, m->error, m->message, out);
                return;
            }
        }
        s.remember_publish(r.id.json);  // pending until the broker's PUBCOMP
    }
    publish(s, std::move(r.topic), std::move(r.payload), r.qos, r.retain, r.id, out);
}

void publish_relay::handle(session& s, batch_request& r, action_list& out) {
    for (auto& entry : r.entries) {
        if (auto* failure = std::get_if<decode_failure>(&entry)) {
            pacer_.send_error(s, failure->code, failure->message, failure->id, out);
        } else {
            handle(s, std::get<publish_request>(entry), out);
        }
    }
}

void publish_relay::handle(session& s, device_report_request& r, action_list& out) {
    const std::string& prefix = ctx_.config.device_topic_prefix;
    if (r.device_id != s.client_id()) {
        ++ctx_.stats.denied;
        ctx_.audit(s, "denied", prefix + "/" + r.device_id, "a device may only report as itself",
                   out);
        pacer_.send_error(
            s, errc::forbidden,
            "a device may only report as itself; this connection is '" + s.client_id() + "'", r.id,
            out);
        return;
    }
    const bool status = r.what == device_report_request::kind::status;
    std::string topic = prefix + "/" + r.device_id + (status ? "/status" : "/event");
    // A status is retained so that a dashboard subscribing later sees every device's last one.
    publish(s, std::move(topic), std::move(r.frame_json), 1, status, r.id, out);
}

void publish_relay::publish(session& s, std::string topic, std::string payload, std::uint8_t qos,
                            bool retain, const msg_id& reply_to, action_list& out) {
    const acl_decision allowed =
        ctx_.security().rules.check_publish(s.client_id(), s.username(), topic, s.grant());
    if (!allowed.allowed) {
        ++ctx_.stats.denied;
        ctx_.audit(s, "denied", topic, allowed.reason, out);
        refuse(s, qos, reply_to, errc::forbidden, allowed.reason, out);
        return;
    }
    const publish_config& config = ctx_.config.publishing;
    const double burst = config.burst > 0 ? config.burst : std::max(1.0, config.rate);
    if (!s.take_publish_token(ctx_.env.steady_ms(), config.rate, burst)) {
        ++ctx_.stats.rate_limited;
        // A QoS 0 publish without a msgid asked for no answer (docs/security.md): a client
        // flooding them must not get a flood of errors queued for it.
        if (qos == 0 && reply_to.empty()) return;
        refuse(s, qos, reply_to, errc::rate_limited, "over this client's publish rate limit", out);
        return;
    }
    if (audited_topic(topic)) ctx_.audit(s, "publish", topic, {}, out);
    ++s.counters().publishes;
    pending_publish p;
    p.owner = s.key();
    p.reply_to = reply_to;
    p.request = publish_upstream{0, std::move(topic), std::move(payload), qos, retain, {}, {}};
    // QoS 1/2 wait behind publishes held for a retry, so that they reach the broker in order.
    if (ctx_.upstream_up && (qos == 0 || offline_queue_.empty())) {
        publish_now(std::move(p), out);
        return;
    }
    if (qos == 0) {
        ++ctx_.stats.publishes_dropped;
        if (!reply_to.empty()) {
            pacer_.send_error(
                s, errc::unavailable,
                "the broker is unreachable; qos 0 publishes are dropped until it is back", reply_to,
                out);
        }
        return;
    }
    if (offline_queue_.size() >= config.offline_queue_messages ||
        offline_queue_bytes_ + bytes_of(p.request) > config.offline_queue_bytes) {
        ++ctx_.stats.publishes_refused;
        refuse(s, qos, reply_to, errc::unavailable,
               "the broker is unreachable and the bridge's offline queue is full", out);
        return;
    }
    queue_offline(std::move(p));
}

void publish_relay::pause_reading_of(session& s, action_list& out) {
    liveness& live = s.live();
    if (live.reading_paused || live.closing) return;
    live.reading_paused = true;
    ++ctx_.stats.publishers_paused;
    paused_.push_back(s.connection());
    // emplace: GCC 12 at -O2 falsely warns maybe-uninitialized on push_back here.
    out.emplace_back(std::in_place_type<pause_reading>, pause_reading{s.connection()});
}

void publish_relay::upstream_congestion(bool congested, action_list& out) {
    upstream_congested_ = congested;
    if (congested) return;
    const std::int64_t now = ctx_.env.steady_ms();
    for (const connection_id id : paused_) {
        session* s = sessions_.by_connection(id);
        if (s == nullptr || !s->live().reading_paused) continue;  // closed meanwhile
        s->live().reading_paused = false;
        s->live().last_alive_ms = now;  // its heartbeat was not read meanwhile
        // emplace: GCC 12 at -O2 falsely warns maybe-uninitialized on push_back here.
        out.emplace_back(std::in_place_type<resume_reading>, resume_reading{id});
    }
    paused_.clear();
}

bool publish_relay::audited_topic(std::string_view topic) const {
    if (topic::matches(ctx_.config.device_topic_prefix + "/+/control", topic)) return true;
    const auto& extra = ctx_.config.publishing.audit_topics;
    return std::any_of(extra.begin(), extra.end(),
                       [&](const std::string& f) { return topic::matches(f, topic); });
}

// ---------------------------------------------------------------- answers

void publish_relay::answer(session& s, const msg_id& reply_to, std::optional<errc> error,
                           std::string_view message, action_list& out) {
    if (error) {
        ++s.counters().errors;
        pacer_.send(s, out_kind::ack, encode_ack_error(reply_to, *error, message), out);
    } else {
        pacer_.send(s, out_kind::ack, encode_ack_ok(reply_to), out);
    }
}

publish_memory* publish_relay::settle_qos2(session& s, const msg_id& reply_to,
                                           std::optional<errc> error, std::string_view message) {
    publish_memory* m = s.recall_publish(reply_to.json);
    if (m == nullptr) return nullptr;
    m->pending = false;
    m->error = error;
    m->message = std::string(message);
    return m;
}

void publish_relay::refuse(session& s, std::uint8_t qos, const msg_id& reply_to, errc code,
                           std::string_view message, action_list& out) {
    if (qos == 2 && !reply_to.empty()) settle_qos2(s, reply_to, code, message);
    if (qos > 0 && !reply_to.empty()) {
        answer(s, reply_to, code, message, out);
    } else {
        pacer_.send_error(s, code, message, reply_to, out);
    }
}

// ---------------------------------------------------------------- upstream

void publish_relay::queue_offline(pending_publish p) {
    offline_queue_bytes_ += bytes_of(p.request);
    offline_queue_.push_back(std::move(p));
}

void publish_relay::queue_retry(pending_publish p) {
    // Retries were sent earlier than anything never sent (attempts == 0); among themselves they
    // keep the order they were first sent in (op ids grow).
    auto at = offline_queue_.begin();
    while (at != offline_queue_.end() && at->attempts > 0 && at->request.op < p.request.op)
        ++at;
    offline_queue_bytes_ += bytes_of(p.request);
    offline_queue_.insert(at, std::move(p));
}

void publish_relay::flush(action_list& out) {
    while (!offline_queue_.empty()) {
        pending_publish p = std::move(offline_queue_.front());
        offline_queue_.pop_front();
        offline_queue_bytes_ -= bytes_of(p.request);
        publish_now(std::move(p), out);
    }
}

void publish_relay::publish_now(pending_publish p, action_list& out) {
    p.request.op = ctx_.new_op();
    ++p.attempts;
    p.sent_on_connection = ctx_.stats.upstream_connects;
    if (p.tag == 0 && p.owner != session_key{}) ++ctx_.stats.publishes;  // a client's
    if (p.request.qos == 0) {
        loop_back(p.request);  // QoS 0: to this bridge's clients at once
        out.push_back(std::move(p.request));
        return;
    }
    out.push_back(p.request);
    const op_id op = p.request.op;
    pending_publishes_.emplace(op, std::move(p));
}

std::optional<publish_relay::bridge_publish_done> publish_relay::upstream_published(
    op_id op, std::optional<errc> error, std::string_view message, action_list& out) {
    const auto it = pending_publishes_.find(op);
    if (it == pending_publishes_.end()) return std::nullopt;
    pending_publish p = std::move(it->second);
    pending_publishes_.erase(it);
    if (error == errc::unavailable && p.attempts < max_publish_attempts) {
        // The connection went away before the broker confirmed: send it again on the next one.
        // (For QoS 2 this can publish twice if the broker did receive it; a persistent session
        // avoids that.) Paho reports such failures before the loss of the connection itself, so
        // a failure on what is still the current connection waits for the reconnect too;
        // flush() at the next tick sends it anyway if no loss follows.
        if (ctx_.upstream_up && p.sent_on_connection != ctx_.stats.upstream_connects) {
            publish_now(std::move(p), out);
        } else {
            queue_retry(std::move(p));
        }
        return std::nullopt;
    }
    // QoS 1/2: to this bridge's clients once the broker has accepted it, so that they never see
    // a message the broker refused.
    if (!error) loop_back(p.request);
    if (p.tag != 0) return bridge_publish_done{p.tag, error, std::string(message)};
    session* s = sessions_.by_key(p.owner);
    if (s == nullptr || p.reply_to.empty()) return std::nullopt;
    if (p.request.qos == 2) {
        if (publish_memory* m = settle_qos2(*s, p.reply_to, error, message)) {
            for (; m->extra_acks > 0; --m->extra_acks)
                answer(*s, p.reply_to, error, message, out);
        }
    }
    answer(*s, p.reply_to, error, message, out);
    return std::nullopt;
}

void publish_relay::loop_back(const publish_upstream& p) {
    if (!ctx_.local_fanout()) return;
    broker_message m;
    m.topic = p.topic;
    m.payload = p.payload;
    m.qos = p.qos;
    m.retained = p.retain;
    m.response_topic = p.response_topic;
    m.correlation_data = p.correlation_data;
    ctx_.loopback.push_back(std::move(m));
}

void publish_relay::publish_for_bridge(publish_upstream request, std::uint64_t tag,
                                       action_list& out) {
    pending_publish p;
    p.request = std::move(request);
    p.tag = tag;
    if (ctx_.upstream_up && (p.request.qos == 0 || offline_queue_.empty())) {
        publish_now(std::move(p), out);
    } else if (p.request.qos > 0) {
        queue_offline(std::move(p));  // not bounded by the clients' offline queue: few and small
    } else {
        ++ctx_.stats.publishes_dropped;
    }
}

}  // namespace mqttws
