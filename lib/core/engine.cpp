#include "core/engine.hpp"

#include <algorithm>
#include <limits>

namespace mqttws {
namespace {

constexpr std::int64_t forever = std::numeric_limits<std::int64_t>::max();

bool refused_code(int granted) {
    return granted < 0 || granted >= 0x80;
}

}  // namespace

engine::engine(engine_config config, platform& env)
    : config_(std::move(config)),
      env_(env),
      decoder_(config_.decode),
      retained_(config_.retained_cache_bytes) {}

engine::~engine() = default;

// ---------------------------------------------------------------- helpers

session* engine::find_session(session_id id) {
    const auto it = sessions_.find(id);
    return it == sessions_.end() ? nullptr : it->second.get();
}

void engine::send(session& s, frame_ptr frame, action_list& out) {
    ++s.counters().frames_out;
    out.push_back(send_text{s.id(), std::move(frame)});
}

void engine::send_error(session& s, errc code, std::string_view message, const msg_id& id,
                        action_list& out, std::string_view topic) {
    ++s.counters().errors;
    send(s, encode_error(code, message, id, topic), out);
}

void engine::broadcast(const frame_ptr& frame, action_list& out) {
    for (auto& [id, s] : sessions_) {
        if (s->authenticated()) send(*s, frame, out);
    }
}

// ---------------------------------------------------------------- client events

void engine::client_opened(session_id id, std::string remote_address, action_list& /*out*/) {
    sessions_.emplace(id, std::make_unique<session>(id, std::move(remote_address)));
}

void engine::client_text(session_id id, std::string_view frame, action_list& out) {
    session* s = find_session(id);
    if (s == nullptr) return;
    ++s->counters().frames_in;
    auto decoded = decoder_.decode(frame);
    if (auto* failure = std::get_if<decode_failure>(&decoded)) {
        send_error(*s, failure->code, failure->message, failure->id, out);
        return;
    }
    auto& request = std::get<client_request>(decoded);
    if (!std::holds_alternative<auth_request>(request) && !ensure_authenticated(*s, out)) return;
    std::visit([&](auto& r) { handle(*s, r, out); }, request);
}

void engine::client_closed(session_id id, action_list& out) {
    const auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    session& s = *it->second;
    std::vector<std::string> filters;
    filters.reserve(s.subscriptions().size());
    for (const auto& entry : s.subscriptions())
        filters.push_back(entry.first);
    for (const auto& f : filters)
        unsubscribe(s, f, out);
    sessions_.erase(it);
}

// ---------------------------------------------------------------- authentication

bool engine::ensure_authenticated(session& s, action_list& out) {
    if (s.authenticated()) return true;
    // No credentials are configured: a client that skips `auth` gets a generated id.
    authenticate(s, {}, false, out);
    return true;
}

void engine::authenticate(session& s, std::string client_id, bool is_device, action_list& out) {
    if (client_id.empty()) client_id = "anon-" + env_.random_hex(6);
    std::string control_topic;
    if (is_device) control_topic = config_.device_topic_prefix + "/" + client_id + "/control";
    s.authenticate(std::move(client_id), is_device, control_topic);
    if (is_device) subscribe(s, control_topic, 0, std::nullopt, out);
}

void engine::handle(session& s, auth_request& r, action_list& out) {
    if (s.authenticated()) {
        send_error(s, errc::bad_request, "already authenticated as '" + s.client_id() + "'", r.id,
                   out);
        return;
    }
    // The response goes first: frames caused by authenticating (a device's retained control
    // message, the upstream status) follow it.
    std::string id = r.client_id.empty() ? "anon-" + env_.random_hex(6) : r.client_id;
    send(s, encode_auth_response(id, {}, false, env_.wall_ms(), r.id), out);
    authenticate(s, std::move(id), r.is_device, out);
    if (!upstream_up_) send(s, encode_upstream_status(false, env_.wall_ms()), out);
}

// ---------------------------------------------------------------- subscribe / unsubscribe

void engine::handle(session& s, subscribe_request& r, action_list& out) {
    for (const auto& filter : r.filters) {
        if (auto problem = topic::check_filter(filter, config_.topic_limits)) {
            send_error(s, problem->too_large ? errc::too_large : errc::bad_request,
                       problem->message, r.id, out, filter);
            continue;
        }
        if (topic::split_shared(filter)) {
            send_error(s, errc::unsupported,
                       "shared subscriptions ($share/...) are not supported by this bridge", r.id,
                       out, filter);
            continue;
        }
        const bool is_new = s.subscriptions().find(filter) == s.subscriptions().end();
        if (is_new && s.subscriptions().size() >= config_.max_subscriptions_per_client) {
            send_error(s, errc::too_large,
                       "this client already holds " +
                           std::to_string(config_.max_subscriptions_per_client) +
                           " subscriptions, the limit",
                       r.id, out, filter);
            continue;
        }
        subscribe(s, filter, r.qos, r.id, out);
    }
}

void engine::subscribe(session& s, const std::string& filter, std::uint8_t qos,
                       std::optional<msg_id> reply, action_list& out) {
    client_subscription& sub = s.subscriptions()[filter];
    sub.qos = qos;
    sub.pending_suback = std::move(reply);
    sub.waiting_op = 0;

    const auto added = registry_.add(filter, &s, qos);
    upstream_filter& entry = *added.entry;
    const bool v5 = config_.mqtt_version >= 5;

    if (added.is_first) {
        if (v5) {
            entry.subscription_id = next_subscription_id_++;
            filters_by_subscription_id_[entry.subscription_id] = &entry;
        } else {
            entry.replay_targets.push_back(&s);
        }
        // While the broker is down, upstream_connected() subscribes every held filter.
        if (upstream_up_) sub.waiting_op = subscribe_upstream_now(entry, true, out);
        return;
    }

    if (!v5) {
        // MQTT 3.1.1 cannot tell which live messages are retained, so there is no retained
        // store: subscribe again and route the broker's replay to this client only.
        if (std::find(entry.replay_targets.begin(), entry.replay_targets.end(), &s) ==
            entry.replay_targets.end()) {
            entry.replay_targets.push_back(&s);
        }
        if (upstream_up_) sub.waiting_op = subscribe_upstream_now(entry, true, out);
        return;
    }

    if (added.qos_changed && upstream_up_) {
        sub.waiting_op = subscribe_upstream_now(entry, false, out);
    } else if (!entry.confirmed) {
        sub.waiting_op = upstream_up_ ? entry.last_subscribe_op : 0;
    }
    // A confirmed filter's retained messages are all in the store; an unconfirmed one's are
    // still to come from the broker, and reach this client through normal routing.
    if (entry.confirmed) replay_retained_from_store(s, filter, qos, out);
    if (sub.waiting_op == 0 && entry.confirmed && sub.pending_suback) {
        send(s, encode_suback(*sub.pending_suback, filter, std::min<int>(qos, entry.granted_qos)),
             out);
        sub.pending_suback.reset();
    }
}

op_id engine::subscribe_upstream_now(upstream_filter& entry, bool replay_retained,
                                     action_list& out) {
    const op_id op = next_op_++;
    out.push_back(subscribe_upstream{op, entry.filter, entry.upstream_qos, entry.subscription_id,
                                     replay_retained});
    pending_subscribes_[op] = pending_subscribe{entry.filter};
    entry.last_subscribe_op = op;
    if (config_.mqtt_version < 5 && replay_retained) {
        if (entry.replay_until_ms == 0) open_replay_windows_.push_back(entry.filter);
        entry.replay_until_ms = forever;  // until grace after the SUBACK
    }
    return op;
}

void engine::replay_retained_from_store(session& s, std::string_view filter, std::uint8_t qos,
                                        action_list& out) {
    const std::int64_t now = env_.wall_ms();
    retained_.for_each_matching(filter, [&](const retained_message& m) {
        const bool control = s.is_device() && m.topic == s.control_topic();
        const message_body body(control ? "control" : "message", m.topic, m.payload, true, now,
                                config_.decode.max_depth);
        frame_ptr unused;
        deliver(s, body, std::min(qos, m.qos), unused, out);
    });
}

void engine::upstream_subscribed(op_id op, int granted, action_list& out) {
    const auto pending = pending_subscribes_.find(op);
    if (pending == pending_subscribes_.end()) return;  // superseded by a reconnect
    const std::string filter = std::move(pending->second.filter);
    pending_subscribes_.erase(pending);
    upstream_filter* entry = registry_.find(filter);
    if (entry == nullptr) return;  // everyone left meanwhile (and it was unsubscribed)

    const bool refused = refused_code(granted);
    if (!refused) {
        entry->granted_qos = granted;
        entry->confirmed = true;
    }
    if (entry->replay_until_ms == forever && op == entry->last_subscribe_op) {
        entry->replay_until_ms = env_.steady_ms() + config_.retained_grace_ms;
    }

    std::vector<session*> rejected;
    for (const auto& sub : entry->subscribers) {
        auto it = sub.who->subscriptions().find(filter);
        if (it == sub.who->subscriptions().end() || it->second.waiting_op != op) continue;
        client_subscription& cs = it->second;
        cs.waiting_op = 0;
        if (refused) {
            rejected.push_back(sub.who);
            send_error(*sub.who, errc::forbidden, "the broker refused the subscription",
                       cs.pending_suback.value_or(msg_id{}), out, filter);
        } else if (cs.pending_suback) {
            send(*sub.who,
                 encode_suback(*cs.pending_suback, filter, std::min<int>(cs.qos, granted)), out);
            cs.pending_suback.reset();
        }
    }
    for (session* s : rejected)
        unsubscribe(*s, filter, out);
}

void engine::handle(session& s, unsubscribe_request& r, action_list& out) {
    for (const auto& filter : r.filters) {
        if (auto problem = topic::check_filter(filter, config_.topic_limits)) {
            send_error(s, problem->too_large ? errc::too_large : errc::bad_request,
                       problem->message, r.id, out, filter);
            continue;
        }
        unsubscribe(s, filter, out);
        send(s, encode_unsuback(r.id, filter), out);
    }
}

void engine::unsubscribe(session& s, const std::string& filter, action_list& out) {
    const auto it = s.subscriptions().find(filter);
    if (it == s.subscriptions().end()) return;
    s.subscriptions().erase(it);
    upstream_filter* entry = registry_.find(filter);
    if (entry == nullptr) return;
    const std::uint32_t subscription_id = entry->subscription_id;
    const auto removed = registry_.remove(filter, &s);
    if (removed.was_last) {
        release_filter(filter, subscription_id, out);
    } else if (removed.qos_changed && upstream_up_) {
        subscribe_upstream_now(*registry_.find(filter), false, out);
    }
}

void engine::release_filter(std::string_view filter, std::uint32_t subscription_id,
                            action_list& out) {
    if (subscription_id != 0) filters_by_subscription_id_.erase(subscription_id);
    if (upstream_up_) out.push_back(unsubscribe_upstream{next_op_++, std::string(filter)});
    if (config_.mqtt_version >= 5) {
        retained_.evict_under(filter, [&](const std::string& topic) {
            bool held = false;
            registry_.match(topic, [&](upstream_filter&) { held = true; });
            return held;
        });
    }
}

// ---------------------------------------------------------------- publish

void engine::handle(session& s, publish_request& r, action_list& out) {
    if (auto problem = topic::check_name(r.topic, config_.topic_limits)) {
        refuse_publish(s, r.qos, r.id, problem->too_large ? errc::too_large : errc::bad_request,
                       problem->message, out);
        return;
    }
    publish(s, std::move(r.topic), std::move(r.payload), r.qos, r.retain, r.id, out);
}

void engine::handle(session& s, device_report_request& r, action_list& out) {
    if (r.device_id != s.client_id()) {
        send_error(s, errc::forbidden,
                   "a device may only report as itself; this connection is '" + s.client_id() + "'",
                   r.id, out);
        return;
    }
    const bool status = r.what == device_report_request::kind::status;
    std::string topic =
        config_.device_topic_prefix + "/" + r.device_id + (status ? "/status" : "/event");
    // A status is retained so that a dashboard subscribing later sees every device's last one.
    publish(s, std::move(topic), std::move(r.frame_json), 1, status, r.id, out);
}

void engine::refuse_publish(session& s, std::uint8_t qos, const msg_id& reply_to, errc code,
                            std::string_view message, action_list& out) {
    if (qos > 0 && !reply_to.empty()) {
        ++s.counters().errors;
        send(s, encode_ack_error(reply_to, code, message), out);
    } else {
        send_error(s, code, message, reply_to, out);
    }
}

void engine::publish(session& s, std::string topic, std::string payload, std::uint8_t qos,
                     bool retain, const msg_id& reply_to, action_list& out) {
    ++s.counters().publishes;
    pending_publish p{s.id(), reply_to,
                      publish_upstream{0, std::move(topic), std::move(payload), qos, retain}};
    if (upstream_up_) {
        publish_now(std::move(p), out);
        return;
    }
    if (qos == 0) {
        ++stats_.publishes_dropped;
        if (!reply_to.empty()) {
            send_error(s, errc::unavailable,
                       "the broker is unreachable; qos 0 publishes are dropped until it is back",
                       reply_to, out);
        }
        return;
    }
    const std::size_t bytes = p.request.topic.size() + p.request.payload.size();
    if (offline_queue_.size() >= config_.offline_queue_messages ||
        offline_queue_bytes_ + bytes > config_.offline_queue_bytes) {
        ++stats_.publishes_refused;
        refuse_publish(s, qos, reply_to, errc::unavailable,
                       "the broker is unreachable and the bridge's offline queue is full", out);
        return;
    }
    offline_queue_bytes_ += bytes;
    offline_queue_.push_back(std::move(p));
}

void engine::publish_now(pending_publish p, action_list& out) {
    p.request.op = next_op_++;
    ++stats_.publishes;
    if (p.request.qos == 0) {
        out.push_back(std::move(p.request));
        return;
    }
    out.push_back(p.request);
    const op_id op = p.request.op;
    pending_publishes_.emplace(op, std::move(p));
}

void engine::upstream_published(op_id op, std::optional<errc> error, std::string_view message,
                                action_list& out) {
    const auto it = pending_publishes_.find(op);
    if (it == pending_publishes_.end()) return;
    const pending_publish p = std::move(it->second);
    pending_publishes_.erase(it);
    session* s = find_session(p.owner);
    if (s == nullptr || p.reply_to.empty()) return;
    if (error) {
        ++s->counters().errors;
        send(*s, encode_ack_error(p.reply_to, *error, message), out);
    } else {
        send(*s, encode_ack_ok(p.reply_to), out);
    }
}

// ---------------------------------------------------------------- other requests

void engine::handle(session& /*s*/, ack_request& /*r*/, action_list& /*out*/) {
    // Acks of qos >= 1 deliveries: nothing to release yet (no in-flight window).
}

void engine::handle(session& s, ping_request& r, action_list& out) {
    send(s, encode_pong(env_.wall_ms(), r.id), out);
}

// ---------------------------------------------------------------- broker → clients

void engine::upstream_message(const broker_message& m, action_list& out) {
    ++stats_.messages_in;
    const bool by_id = !m.subscription_ids.empty();
    const bool v3_replay = !by_id && config_.mqtt_version < 5 && m.retained;
    const std::uint64_t serial = ++fanout_serial_;
    targets_.clear();
    routed_filters_.clear();

    // Which upstream filters this copy of the message is for.
    if (by_id) {
        for (const std::uint32_t id : m.subscription_ids) {
            const auto it = filters_by_subscription_id_.find(id);
            if (it != filters_by_subscription_id_.end()) routed_filters_.push_back(it->second);
        }
    } else {
        registry_.match(m.topic, [&](upstream_filter& f) { routed_filters_.push_back(&f); });
    }

    const auto consider = [&](session* who) {
        if (who->last_fanout == serial) return;
        who->last_fanout = serial;
        const auto& subs = who->subscriptions();
        const session::subscription_ref best =
            subs.size() == 1 ? &*subs.begin() : who->best_match(m.topic);
        if (best == nullptr) return;
        if (by_id && subs.size() > 1) {
            // Another copy of this message, tagged with the best filter's id, reaches this client.
            upstream_filter* chosen = registry_.find(best->first);
            if (std::find(routed_filters_.begin(), routed_filters_.end(), chosen) ==
                routed_filters_.end())
                return;
        }
        targets_.push_back({who, std::min(m.qos, best->second.qos)});
    };

    const std::int64_t now = env_.steady_ms();
    for (upstream_filter* f : routed_filters_) {
        if (v3_replay) {
            if (f->replay_until_ms < now) continue;
            for (session* who : f->replay_targets)
                consider(who);
        } else {
            for (const auto& sub : f->subscribers)
                consider(sub.who);
        }
    }
    if (config_.mqtt_version >= 5 && m.retained) retained_.put(m.topic, m.payload, m.qos);
    if (targets_.empty()) return;

    const std::int64_t timestamp = env_.wall_ms();
    const message_body body("message", m.topic, m.payload, m.retained, timestamp,
                            config_.decode.max_depth);
    std::optional<message_body> control_body;
    frame_ptr shared_frame, shared_control_frame;
    for (const auto& t : targets_) {
        if (t.who->is_device() && m.topic == t.who->control_topic()) {
            if (!control_body)
                control_body.emplace("control", m.topic, m.payload, m.retained, timestamp,
                                     config_.decode.max_depth);
            deliver(*t.who, *control_body, t.qos, shared_control_frame, out);
        } else {
            deliver(*t.who, body, t.qos, shared_frame, out);
        }
    }
}

void engine::deliver(session& s, const message_body& body, std::uint8_t qos, frame_ptr& shared_qos0,
                     action_list& out) {
    ++stats_.deliveries;
    ++s.counters().messages_delivered;
    if (qos == 0) {
        // Every qos 0 recipient gets the same bytes: encode once, share the frame.
        if (!shared_qos0) shared_qos0 = make_frame(body.finish({}));
        send(s, shared_qos0, out);
        return;
    }
    delivery_fields fields;
    fields.qos = qos;
    fields.msgid = s.next_delivery_id();
    send(s, make_frame(body.finish(fields)), out);
}

// ---------------------------------------------------------------- upstream state

void engine::upstream_connected(bool /*session_present*/, action_list& out) {
    upstream_up_ = true;
    ++stats_.upstream_connects;
    out.push_back(log_line{log_level::info, "upstream connected; subscribing " +
                                                std::to_string(registry_.filter_count()) +
                                                " filters"});
    // A clean session: the broker knows none of our filters. Subscribe all of them again; the
    // broker replays their retained messages to every client (as it would to direct clients
    // reconnecting), which also refills the retained store.
    retained_.clear();
    const bool v5 = config_.mqtt_version >= 5;
    registry_.for_each([&](upstream_filter& entry) {
        entry.confirmed = false;
        if (!v5) {
            entry.replay_targets.clear();
            for (const auto& sub : entry.subscribers)
                entry.replay_targets.push_back(sub.who);
        }
        const op_id op = subscribe_upstream_now(entry, true, out);
        for (const auto& sub : entry.subscribers) {
            auto it = sub.who->subscriptions().find(entry.filter);
            if (it != sub.who->subscriptions().end() && it->second.pending_suback)
                it->second.waiting_op = op;
        }
    });
    while (!offline_queue_.empty()) {
        pending_publish p = std::move(offline_queue_.front());
        offline_queue_.pop_front();
        offline_queue_bytes_ -= p.request.topic.size() + p.request.payload.size();
        publish_now(std::move(p), out);
    }
    broadcast(make_frame(encode_upstream_status(true, env_.wall_ms())), out);
}

void engine::upstream_lost(std::string_view reason, action_list& out) {
    if (!upstream_up_) return;
    upstream_up_ = false;
    out.push_back(log_line{log_level::warn, "upstream connection lost: " + std::string(reason)});
    pending_subscribes_.clear();  // upstream_connected() subscribes everything again
    registry_.for_each([](upstream_filter& entry) {
        entry.confirmed = false;
        entry.replay_targets.clear();
        entry.replay_until_ms = 0;
    });
    open_replay_windows_.clear();
    broadcast(make_frame(encode_upstream_status(false, env_.wall_ms())), out);
}

void engine::tick(action_list& /*out*/) {
    const std::int64_t now = env_.steady_ms();
    auto& windows = open_replay_windows_;
    windows.erase(std::remove_if(windows.begin(), windows.end(),
                                 [&](const std::string& filter) {
                                     upstream_filter* entry = registry_.find(filter);
                                     if (entry == nullptr) return true;
                                     if (entry->replay_until_ms > now) return false;
                                     entry->replay_targets.clear();
                                     entry->replay_until_ms = 0;
                                     return true;
                                 }),
                  windows.end());
}

void engine::shutdown(action_list& out) {
    for (auto& [id, s] : sessions_) {
        out.push_back(close_client{id, close_code::going_away, "Bridge shutting down"});
    }
}

engine_stats engine::stats() const {
    engine_stats s = stats_;
    s.clients = sessions_.size();
    s.filters = registry_.filter_count();
    s.upstream_up = upstream_up_;
    s.offline_queued = offline_queue_.size();
    s.retained_cached = retained_.size();
    return s;
}

}  // namespace mqttws
