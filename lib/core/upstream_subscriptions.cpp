#include "core/upstream_subscriptions.hpp"

#include <algorithm>

#include "core/replies.hpp"

namespace mqttws {
namespace {

bool refused_code(int granted) {
    return granted < 0 || granted >= 0x80;
}

}  // namespace

upstream_subscriptions::upstream_subscriptions(engine_context& ctx, session_directory& sessions,
                                               delivery_pacer& pacer)
    : ctx_(ctx),
      sessions_(sessions),
      pacer_(pacer),
      retained_(ctx.config.subscriptions.retained_cache_bytes) {}

// ---------------------------------------------------------------- client requests

void upstream_subscriptions::handle(session& s, const subscribe_request& r, action_list& out) {
    const std::size_t max_per_client = ctx_.config.subscriptions.max_per_client;
    for (const auto& filter : r.filters) {
        if (auto problem = topic::check_filter(filter, ctx_.config.topic_limits)) {
            pacer_.send_error(s, problem->too_large ? errc::too_large : errc::bad_request,
                              problem->message, r.id, out, filter);
            continue;
        }
        if (topic::split_shared(filter)) {
            pacer_.send_error(s, errc::unsupported,
                              "shared subscriptions ($share/...) are not supported by this bridge",
                              r.id, out, filter);
            continue;
        }
        const acl_decision allowed =
            ctx_.security().rules.check_subscribe(s.client_id(), s.username(), filter, s.grant());
        if (!allowed.allowed) {
            ++ctx_.stats.denied;
            ctx_.audit(s, "denied", filter, allowed.reason, out);
            pacer_.send_error(s, errc::forbidden, allowed.reason, r.id, out, filter);
            continue;
        }
        const bool is_new = s.subscriptions().find(filter) == s.subscriptions().end();
        if (is_new && s.subscriptions().size() >= max_per_client) {
            pacer_.send_error(s, errc::too_large,
                              "this client already holds " + std::to_string(max_per_client) +
                                  " subscriptions, the limit",
                              r.id, out, filter);
            continue;
        }
        subscribe(s, filter, r.qos, r.options, r.id, out);
    }
}

void upstream_subscriptions::handle(session& s, const unsubscribe_request& r, action_list& out) {
    for (const auto& filter : r.filters) {
        if (auto problem = topic::check_filter(filter, ctx_.config.topic_limits)) {
            pacer_.send_error(s, problem->too_large ? errc::too_large : errc::bad_request,
                              problem->message, r.id, out, filter);
            continue;
        }
        unsubscribe(s, filter, out);
        pacer_.send(s, out_kind::unsuback, encode_unsuback(r.id, filter), out);
    }
}

void upstream_subscriptions::subscribe(session& s, const std::string& filter, std::uint8_t qos,
                                       const subscription_options& options,
                                       std::optional<msg_id> reply, action_list& out) {
    client_subscription& sub = s.subscriptions()[filter];
    sub.qos = qos;
    sub.options = options;
    sub.pending_suback = std::move(reply);
    sub.waiting_op = 0;

    const auto added = registry_.add(filter, &s, qos);
    upstream_filter& entry = *added.entry;
    upstream_state& state = entry.state;
    sub.upstream = &entry;
    if (parked_until_ms_ != 0) deliver_parked(s, filter, sub, out);

    if (added.is_first) {
        released_while_down_.erase(filter);
        if (ctx_.v5()) {
            state.subscription_id = subscription_ids_.add(&entry);
        }
        // While the broker is down, upstream_connected() subscribes every held filter.
        if (ctx_.upstream_up) sub.waiting_op = subscribe_upstream_now(entry, true, {s.key()}, out);
        return;
    }

    if (!ctx_.v5()) {
        // MQTT 3.1.1 cannot tell which live messages are retained, so there is no retained
        // store: subscribe again and route the broker's replay to this client only.
        if (ctx_.upstream_up) sub.waiting_op = subscribe_upstream_now(entry, true, {s.key()}, out);
        return;
    }

    if (added.qos_changed && ctx_.upstream_up) {
        sub.waiting_op = subscribe_upstream_now(entry, false, {}, out);
    } else if (ctx_.upstream_up && pending_subscribes_.count(state.last_subscribe_op) > 0) {
        sub.waiting_op = state.last_subscribe_op;  // its answer has the granted qos to report
    }
    // A confirmed filter's retained messages are all in the store; an unconfirmed one's are
    // still to come from the broker, and reach this client through normal routing.
    if (state.confirmed) send_retained(s, filter, sub, out);
    if (sub.waiting_op == 0 && state.confirmed && sub.pending_suback) {
        pacer_.send(
            s, out_kind::suback,
            encode_suback(*sub.pending_suback, filter, std::min<int>(qos, state.granted_qos)), out);
        sub.pending_suback.reset();
    }
}

void upstream_subscriptions::unsubscribe(session& s, const std::string& filter, action_list& out,
                                         bool broker_refused) {
    const auto it = s.subscriptions().find(filter);
    if (it == s.subscriptions().end()) return;
    s.subscriptions().erase(it);
    upstream_filter* entry = registry_.find(filter);
    if (entry == nullptr) return;
    const std::uint32_t subscription_id = entry->state.subscription_id;
    const bool broker_holds_it = entry->state.confirmed;
    auto& targets = entry->state.replay_targets;
    targets.erase(std::remove(targets.begin(), targets.end(), &s), targets.end());
    const auto removed = registry_.remove(filter, &s);
    if (removed.was_last) {
        // After a refusal the broker holds nothing to unsubscribe, unless an earlier SUBSCRIBE
        // of the filter was granted.
        release_filter(filter, subscription_id, !broker_refused || broker_holds_it, out);
    } else if (removed.qos_changed && ctx_.upstream_up && !broker_refused) {
        subscribe_upstream_now(*registry_.find(filter), false, {}, out);
    }
}

void upstream_subscriptions::unsubscribe_all(session& s, action_list& out) {
    std::vector<std::string> filters;
    filters.reserve(s.subscriptions().size());
    for (const auto& entry : s.subscriptions())
        filters.push_back(entry.first);
    for (const auto& f : filters)
        unsubscribe(s, f, out);
}

void upstream_subscriptions::recheck(session& s, std::string_view why, action_list& out) {
    std::vector<std::pair<std::string, std::string>> refused;  // filter, reason
    for (const auto& [filter, sub] : s.subscriptions()) {
        const acl_decision d =
            ctx_.security().rules.check_subscribe(s.client_id(), s.username(), filter, s.grant());
        if (!d.allowed) refused.emplace_back(filter, d.reason);
    }
    for (const auto& [filter, reason] : refused) {
        unsubscribe(s, filter, out);
        ctx_.audit(s, "denied", filter, std::string(why) + ": " + reason, out);
        pacer_.send_error(s, errc::forbidden,
                          "subscription removed " + std::string(why) + ": " + reason, {}, out,
                          filter);
    }
}

void upstream_subscriptions::subscribe_own(const std::string& filter, action_list& out) {
    if (filter.empty() || self_.subscriptions().count(filter) > 0) return;
    if (!self_.authenticated()) self_.authenticate("bridge", false, {});
    subscribe(self_, filter, 1, {}, std::nullopt, out);
}

std::size_t upstream_subscriptions::filter_count() const {
    return registry_.filter_count() - own_only_filters().size();
}

std::vector<std::string> upstream_subscriptions::own_only_filters() const {
    std::vector<std::string> own_only;
    for (const auto& [filter, sub] : self_.subscriptions()) {
        if (sub.upstream != nullptr && sub.upstream->subscribers.size() == 1)
            own_only.push_back(filter);
    }
    return own_only;
}

void upstream_subscriptions::resend_retained(session& s, action_list& out) {
    for (const auto& [filter, sub] : s.subscriptions())
        send_retained(s, filter, sub, out);
}

op_id upstream_subscriptions::subscribe_upstream_now(upstream_filter& entry, bool replay_retained,
                                                     std::vector<session_key> replay_to,
                                                     action_list& out) {
    const op_id op = ctx_.new_op();
    out.push_back(subscribe_upstream{op, entry.filter, entry.upstream_qos,
                                     entry.state.subscription_id, replay_retained,
                                     ctx_.local_fanout()});
    pending_subscribes_[op] = pending_subscribe{entry.filter, std::move(replay_to)};
    entry.state.last_subscribe_op = op;
    return op;
}

void upstream_subscriptions::release_filter(std::string_view filter, std::uint32_t subscription_id,
                                            bool unsubscribe_upstream_too, action_list& out) {
    if (subscription_id != 0) subscription_ids_.erase(subscription_id);
    // Shutting down: the broker keeps what it holds (a persistent session must keep its
    // subscriptions so that it queues messages until the bridge is back).
    if (unsubscribe_upstream_too && !ctx_.shutting_down) {
        if (ctx_.upstream_up) {
            out.push_back(unsubscribe_upstream{ctx_.new_op(), std::string(filter)});
        } else if (ctx_.config.broker.persistent_session) {
            released_while_down_.emplace(filter);  // the broker still holds it
        } else if (ctx_.config.behind_hub) {
            out.push_back(unsubscribe_upstream{ctx_.new_op(), std::string(filter)});
        }
    }
    if (ctx_.v5()) {
        retained_.evict_under(filter, [&](const std::string& topic) {
            bool held = false;
            registry_.match(topic, [&](upstream_filter&) { held = true; });
            return held;
        });
    }
}

std::shared_ptr<const message_body> upstream_subscriptions::retained_body(
    const session& s, const retained_message& m) const {
    const bool control = s.is_device() && m.topic == s.control_topic();
    return std::make_shared<const message_body>(control ? "control" : "message", m.topic, m.payload,
                                                true, ctx_.env.wall_ms(),
                                                ctx_.config.decode.max_depth);
}

void upstream_subscriptions::send_retained(session& s, const std::string& filter,
                                           const client_subscription& sub, action_list& out) {
    upstream_filter* entry = registry_.find(filter);
    if (entry == nullptr) return;
    if (!ctx_.v5()) {
        // No store with 3.1.1: ask the broker to replay, routed to this client only.
        if (ctx_.upstream_up) subscribe_upstream_now(*entry, true, {s.key()}, out);
        return;
    }
    if (!entry->state.confirmed) return;  // the broker's replay is still to come
    if (is_own(&s)) {
        retained_.for_each_matching(filter, [&](const retained_message& m) {
            broker_message copy;
            copy.topic = m.topic;
            copy.payload = m.payload;
            copy.qos = m.qos;
            copy.retained = true;
            own_retained_.push_back(std::move(copy));
        });
        return;
    }
    retained_.for_each_matching(filter, [&](const retained_message& m) {
        pacer_.deliver(s, retained_body(s, m), std::min(sub.qos, m.qos), sub.options, out);
    });
}

void upstream_subscriptions::deliver_parked(session& s, std::string_view filter,
                                            const client_subscription& sub, action_list& out) {
    if (is_own(&s)) return;
    for (const auto& p : parked_) {
        if (topic::matches(filter, p.topic))
            pacer_.deliver(s, p.body, std::min(sub.qos, p.qos), sub.options, out);
    }
}

// ---------------------------------------------------------------- the broker

void upstream_subscriptions::upstream_subscribed(op_id op, int granted, action_list& out) {
    const auto pending = pending_subscribes_.find(op);
    if (pending == pending_subscribes_.end()) return;  // superseded by a reconnect
    const std::string filter = std::move(pending->second.filter);
    const std::vector<session_key> replay_to = std::move(pending->second.replay_to);
    pending_subscribes_.erase(pending);
    upstream_filter* entry = registry_.find(filter);
    if (entry == nullptr) return;  // everyone left meanwhile (and it was unsubscribed)
    upstream_state& state = entry->state;

    const bool refused = refused_code(granted);
    if (!refused) {
        state.granted_qos = granted;
        state.confirmed = true;
    }
    if (!ctx_.v5()) {
        // Mosquitto sends a SUBACK, then the retained messages it replays for that SUBSCRIBE:
        // until the next SUBACK for this filter, retained messages go to who caused this one.
        state.replay_targets.clear();
        for (const session_key key : replay_to) {
            session* who = key == self_.key() ? &self_ : sessions_.by_key(key);
            if (who != nullptr && who->subscriptions().count(filter) > 0)
                state.replay_targets.push_back(who);
        }
        if (state.replay_until_ms == 0) open_replay_windows_.push_back(filter);
        state.replay_until_ms = ctx_.env.steady_ms() + ctx_.config.subscriptions.retained_grace_ms;
    }

    std::vector<session*> rejected;
    for (const auto& sub : entry->subscribers) {
        auto it = sub.who->subscriptions().find(filter);
        if (it == sub.who->subscriptions().end() || it->second.waiting_op != op) continue;
        client_subscription& cs = it->second;
        cs.waiting_op = 0;
        if (refused) {
            rejected.push_back(sub.who);
            pacer_.send_error(*sub.who, errc::forbidden, "the broker refused the subscription",
                              cs.pending_suback.value_or(msg_id{}), out, filter);
        } else if (cs.pending_suback) {
            pacer_.send(*sub.who, out_kind::suback,
                        encode_suback(*cs.pending_suback, filter, std::min<int>(cs.qos, granted)),
                        out);
            cs.pending_suback.reset();
        }
    }
    for (session* s : rejected)
        unsubscribe(*s, filter, out, /*broker_refused=*/true);
}

void upstream_subscriptions::upstream_connected(bool kept, bool first_connection,
                                                action_list& out) {
    if (kept && first_connection) {
        // A restart: the broker may hold messages for filters nobody has asked for yet.
        parked_until_ms_ = ctx_.env.steady_ms() + ctx_.config.subscriptions.restart_hold_ms;
    }
    // Behind a hub (engine shards) the hub says it once for the bridge.
    if (!ctx_.config.behind_hub)
        out.push_back(
            log_line{log_level::info, upstream_connected_line(kept, registry_.filter_count())});
    if (!kept) {
        // The broker knows none of our filters. Subscribe all of them again; the broker replays
        // their retained messages to every client (as it would to direct clients reconnecting),
        // which also refills the retained store.
        retained_.clear();
        released_while_down_.clear();
    }
    registry_.for_each([&](upstream_filter& entry) {
        if (kept && entry.state.confirmed) return;  // the broker still has it
        entry.state.confirmed = false;
        std::vector<session_key> everyone;  // 3.1.1: the broker's replay is for all of them
        if (!ctx_.v5()) {
            for (const auto& sub : entry.subscribers)
                everyone.push_back(sub.who->key());
        }
        const op_id op = subscribe_upstream_now(entry, true, std::move(everyone), out);
        for (const auto& sub : entry.subscribers) {
            auto it = sub.who->subscriptions().find(entry.filter);
            if (it != sub.who->subscriptions().end() && it->second.pending_suback)
                it->second.waiting_op = op;
        }
    });
    for (const auto& filter : released_while_down_)
        out.push_back(unsubscribe_upstream{ctx_.new_op(), filter});
    released_while_down_.clear();
}

void upstream_subscriptions::upstream_lost() {
    pending_subscribes_.clear();  // upstream_connected() subscribes again what is needed
    const bool keep = ctx_.config.broker.persistent_session;
    registry_.for_each([keep](upstream_filter& entry) {
        if (!keep) entry.state.confirmed = false;
        entry.state.replay_targets.clear();
        entry.state.replay_until_ms = 0;
    });
    open_replay_windows_.clear();
}

void upstream_subscriptions::tick(std::int64_t now) {
    if (parked_until_ms_ != 0 && parked_until_ms_ <= now) {
        parked_.clear();
        parked_until_ms_ = 0;
    }
    auto& windows = open_replay_windows_;
    windows.erase(std::remove_if(windows.begin(), windows.end(),
                                 [&](const std::string& filter) {
                                     upstream_filter* entry = registry_.find(filter);
                                     if (entry == nullptr) return true;
                                     if (entry->state.replay_until_ms > now) return false;
                                     entry->state.replay_targets.clear();
                                     entry->state.replay_until_ms = 0;
                                     return true;
                                 }),
                  windows.end());
}

// ---------------------------------------------------------------- for the router

void upstream_subscriptions::routed_filters(std::string_view topic,
                                            const std::vector<std::uint32_t>& subscription_ids,
                                            std::vector<upstream_filter*>& out) {
    if (!subscription_ids.empty()) {
        for (const std::uint32_t id : subscription_ids) {
            if (upstream_filter* f = subscription_ids_.find(id)) out.push_back(f);
        }
    } else {
        registry_.match(topic, [&](upstream_filter& f) { out.push_back(&f); });
    }
}

void upstream_subscriptions::record_retained(const broker_message& m) {
    if (ctx_.v5() && m.retained) retained_.put(m.topic, m.payload, m.qos);
}

bool upstream_subscriptions::park(const broker_message& m,
                                  const std::shared_ptr<const message_body>& body) {
    if (parked_until_ms_ == 0 || m.qos == 0 || m.retained ||
        parked_.size() >= ctx_.config.subscriptions.restart_hold_messages) {
        return false;
    }
    parked_.push_back(parked_message{body, m.topic, m.qos});
    return true;
}

}  // namespace mqttws
