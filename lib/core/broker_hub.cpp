#include "core/broker_hub.hpp"

#include <algorithm>

namespace mqttws {

namespace {

bool refused_code(int granted) {
    return granted < 0 || granted >= 0x80;
}

std::shared_ptr<const broker_message> as_message(const publish_upstream& p) {
    auto m = std::make_shared<broker_message>();
    m->topic = p.topic;
    m->payload = p.payload;
    m->qos = p.qos;
    m->retained = p.retain;
    m->response_topic = p.response_topic;
    m->correlation_data = p.correlation_data;
    return m;
}

}  // namespace

std::string session_token_prefix(shard_index shard) {
    return std::to_string(shard) + "-";
}

std::optional<shard_index> shard_of_session_token(std::string_view token, std::size_t shards) {
    const std::size_t dash = token.find('-');
    if (dash == 0 || dash == std::string_view::npos || dash > 4) return std::nullopt;
    shard_index k = 0;
    for (const char c : token.substr(0, dash)) {
        if (c < '0' || c > '9') return std::nullopt;
        k = k * 10 + static_cast<shard_index>(c - '0');
    }
    if (k >= shards) return std::nullopt;
    return k;
}

engine_config config_for_shard(engine_config config, shard_index k, std::size_t shards) {
    config.auth.session_token_prefix = session_token_prefix(k);
    config.behind_hub = true;
    config.shard = k;
    config.shards = shards;
    // The bridge's own status is one retained message: shard 0 publishes it.
    if (k != 0) config.devices.bridge_status_topic.clear();
    return config;
}

std::optional<shard_index> shard_for_auth(const auth_request& r, std::size_t shards) {
    if (const auto k = shard_of_session_token(r.session, shards)) return k;
    if (!r.is_device) return std::nullopt;
    return shard_of_device(r.client_id, shards);
}

shard_index shard_of_device(std::string_view device, std::size_t shards) {
    // FNV-1a: the same device lands on the same shard in every run with as many shards.
    std::uint64_t hash = 1469598103934665603ULL;
    for (const char c : device) {
        hash ^= static_cast<unsigned char>(c);
        hash *= 1099511628211ULL;
    }
    return static_cast<shard_index>(hash % shards);
}

broker_hub::broker_hub(std::size_t shards, std::size_t retained_max_bytes, bool persistent_session)
    : shard_count_(shards),
      persistent_session_(persistent_session),
      retained_(retained_max_bytes),
      ids_by_shard_(shards) {}

void broker_hub::from_shard(shard_index from, action a, action_list& upstream,
                            shard_deliveries& to_shards) {
    if (auto* s = std::get_if<subscribe_upstream>(&a)) {
        subscribe(from, *s, upstream, to_shards);
    } else if (auto* u = std::get_if<unsubscribe_upstream>(&a)) {
        unsubscribe(from, *u, upstream);
    } else if (auto* p = std::get_if<publish_upstream>(&a)) {
        publish(from, std::move(*p), upstream, to_shards);
    } else if (auto* d = std::get_if<device_presence>(&a)) {
        for (shard_index k = 0; k < shard_count_; ++k)
            if (k != from) to_shards.push_back({k, shard_presence{d->device, d->online}});
    }
}

std::size_t broker_hub::holders(std::string_view filter) {
    const held_filter* f = filters_.find(filter);
    return f != nullptr ? f->holders : 0;
}

// ---------------------------------------------------------------- the shards' requests

void broker_hub::subscribe(shard_index from, const subscribe_upstream& s, action_list& upstream,
                           shard_deliveries& to_shards) {
    held_filter& f = filters_.get_or_create(s.filter);
    if (f.filter.empty()) {
        f.filter = s.filter;
        f.subscription_id = subscription_ids_.add(&f);
        f.shards.resize(shard_count_);
    }
    std::optional<membership>& member = f.shards[from];
    if (!member) ++f.holders;
    member = membership{s.subscription_id, s.qos};
    // A shard subscribes while the connection is down only in a race with the news of its loss;
    // it subscribes again when the connection is back.
    if (!up_) return;

    std::uint8_t wanted = 0;
    for (const auto& m : f.shards) {
        if (m) wanted = std::max(wanted, m->qos);
    }
    // The broker replays retained messages for a SUBSCRIBE that creates its subscription, to
    // every holder through the hub. A shard joining a filter the broker holds already gets them
    // from the store instead.
    const bool from_store = s.replay_retained && f.confirmed;
    const waiter w{from, s.op, from_store};
    if ((!f.confirmed && f.pending == 0) || wanted > f.upstream_qos) {
        // Only the first SUBSCRIBE of a filter replays; one that raises its QoS must not replay
        // to the holders that have the retained messages already.
        const bool replay = !f.confirmed && f.pending == 0;
        f.upstream_qos = std::max(f.upstream_qos, wanted);
        const op_id op = subscribe_now(f, replay, s.no_local, upstream);
        pending_subscribes_[op].waiters.push_back(w);
    } else if (f.pending != 0) {
        pending_subscribes_[f.pending].waiters.push_back(w);
    } else {
        to_shards.push_back({from, shard_subscribed{s.op, f.granted}});
        if (from_store) replay_retained(f, from, to_shards);
    }
}

op_id broker_hub::subscribe_now(held_filter& f, bool replay_retained, bool no_local,
                                action_list& upstream) {
    const op_id op = next_op_++;
    upstream.push_back(subscribe_upstream{op, f.filter, f.upstream_qos, f.subscription_id,
                                          replay_retained, no_local});
    pending_subscribes_[op].filter = f.filter;
    f.pending = op;
    return op;
}

void broker_hub::unsubscribe(shard_index from, const unsubscribe_upstream& u,
                             action_list& upstream) {
    held_filter* f = filters_.find(u.filter);
    if (f == nullptr || !f->shards[from]) return;
    f->shards[from].reset();
    if (--f->holders > 0) return;
    // A shard unsubscribes while the connection is down only with a persistent session, once it
    // is back (engine: released_while_down), or in a race with the news of its loss.
    if (up_ && (f->confirmed || f->pending != 0))
        upstream.push_back(unsubscribe_upstream{next_op_++, f->filter});
    forget(*f);
}

void broker_hub::forget(held_filter& f) {
    const std::string filter = std::move(f.filter);
    subscription_ids_.erase(f.subscription_id);
    filters_.erase(filter);  // destroys `f`
    retained_.evict_under(filter, [&](const std::string& topic) {
        bool held = false;
        filters_.match(topic, [&](held_filter&) { held = true; });
        return held;
    });
}

void broker_hub::publish(shard_index from, publish_upstream p, action_list& upstream,
                         shard_deliveries& to_shards) {
    pending_publish pending{from, p.op, nullptr};
    // A copy for the other shards only when one of them has a subscriber for it, or for the store.
    bool wanted = false;
    filters_.match(p.topic, [&](held_filter& f) {
        wanted = wanted || p.retain || f.holders > (f.shards[from] ? 1U : 0U);
    });
    if (wanted) pending.local = as_message(p);
    p.op = next_op_++;
    const op_id op = p.op;
    const std::uint8_t qos = p.qos;
    upstream.push_back(std::move(p));
    if (qos == 0) {
        if (pending.local) fan_out_local(from, pending.local, to_shards);
    } else {
        pending_publishes_[op] = std::move(pending);
    }
}

void broker_hub::fan_out_local(shard_index from, const std::shared_ptr<const broker_message>& m,
                               shard_deliveries& to_shards) {
    std::vector<bool> reached(shard_count_, false);
    bool held = false;
    filters_.match(m->topic, [&](held_filter& f) {
        held = true;
        for (shard_index k = 0; k < shard_count_; ++k)
            reached[k] = reached[k] || (k != from && f.shards[k].has_value());
    });
    if (held && m->retained) retained_.put(m->topic, m->payload, m->qos);
    for (shard_index k = 0; k < shard_count_; ++k) {
        if (reached[k]) to_shards.push_back({k, shard_message{m, {}, true}});
    }
}

void broker_hub::replay_retained(const held_filter& f, shard_index to,
                                 shard_deliveries& to_shards) {
    const std::uint32_t id = f.shards[to]->subscription_id;
    retained_.for_each_matching(f.filter, [&](const retained_message& r) {
        auto m = std::make_shared<broker_message>();
        m->topic = r.topic;
        m->payload = r.payload;
        m->qos = std::min(r.qos, f.upstream_qos);
        m->retained = true;
        to_shards.push_back({to, shard_message{std::move(m), {id}, false}});
    });
}

// ---------------------------------------------------------------- the broker

void broker_hub::upstream_message(std::shared_ptr<const broker_message> m,
                                  shard_deliveries& to_shards) {
    ++messages_in_;
    bool known = false;
    for (const std::uint32_t id : m->subscription_ids) {
        const held_filter* held = subscription_ids_.find(id);
        if (held == nullptr) continue;
        known = true;
        const held_filter& f = *held;
        for (shard_index k = 0; k < shard_count_; ++k) {
            if (f.shards[k]) ids_by_shard_[k].push_back(f.shards[k]->subscription_id);
        }
    }
    if (!known) {
        // Not for a filter held now: a message the broker queued before a restart, for filters
        // nobody has subscribed to again yet, or one sent just before an UNSUBSCRIBE took. Each
        // shard holds it for clients that subscribe shortly, if it holds any (engine: park),
        // under an id that no filter has.
        for (shard_index k = 0; k < shard_count_; ++k)
            to_shards.push_back({k, shard_message{m, {no_filter}, false}});
        return;
    }
    if (m->retained) retained_.put(m->topic, m->payload, m->qos);
    for (shard_index k = 0; k < shard_count_; ++k) {
        if (ids_by_shard_[k].empty()) continue;
        to_shards.push_back({k, shard_message{m, std::move(ids_by_shard_[k]), false}});
        ids_by_shard_[k].clear();
    }
}

void broker_hub::upstream_subscribed(op_id op, int granted, shard_deliveries& to_shards) {
    const auto it = pending_subscribes_.find(op);
    if (it == pending_subscribes_.end()) return;  // superseded by a reconnect
    pending_subscribe pending = std::move(it->second);
    pending_subscribes_.erase(it);
    held_filter* f = filters_.find(pending.filter);
    if (f == nullptr) return;  // every shard left meanwhile (and it was unsubscribed)
    if (f->pending == op) f->pending = 0;
    const bool refused = refused_code(granted);
    if (!refused) {
        f->granted = granted;
        f->confirmed = true;
    }
    for (const waiter& w : pending.waiters) {
        to_shards.push_back({w.shard, shard_subscribed{w.op, granted}});
        // A refused first SUBSCRIBE: each waiting shard drops the filter without unsubscribing.
        if (refused && !f->confirmed && f->shards[w.shard]) {
            f->shards[w.shard].reset();
            --f->holders;
        } else if (!refused && w.replay_from_store && f->shards[w.shard]) {
            replay_retained(*f, w.shard, to_shards);
        }
    }
    if (f->holders == 0) forget(*f);
}

void broker_hub::upstream_published(op_id op, std::optional<errc> error, std::string_view message,
                                    shard_deliveries& to_shards) {
    const auto it = pending_publishes_.find(op);
    if (it == pending_publishes_.end()) return;
    pending_publish p = std::move(it->second);
    pending_publishes_.erase(it);
    to_shards.push_back({p.shard, shard_published{p.op, error, std::string(message)}});
    // QoS 1/2 reach the other shards' clients once the broker has accepted them, as the
    // publisher's own shard does (publish_relay: local fan-out).
    if (!error && p.local) fan_out_local(p.shard, p.local, to_shards);
}

void broker_hub::upstream_connected(bool session_present, action_list& out,
                                    shard_deliveries& to_shards) {
    up_ = true;
    out.push_back(
        log_line{log_level::info,
                 upstream_connected_line(session_present && persistent_session_, filters_.size())});
    if (!session_present) {
        // The broker holds none of the bridge's filters: each shard subscribes again all it
        // holds (under the same ids: messages may come before), and the broker's replays refill
        // the store.
        filters_.for_each([](held_filter& f) { f.confirmed = false; });
        retained_.clear();
    }
    for (shard_index k = 0; k < shard_count_; ++k)
        to_shards.push_back({k, shard_connected{session_present}});
}

void broker_hub::upstream_lost(std::string_view reason, action_list& out,
                               shard_deliveries& to_shards) {
    if (up_) out.push_back(log_line{log_level::warn, upstream_lost_line(reason)});
    up_ = false;
    pending_subscribes_.clear();  // the shards subscribe again what is needed
    filters_.for_each([&](held_filter& f) {
        f.pending = 0;
        if (!persistent_session_) f.confirmed = false;
    });
    for (shard_index k = 0; k < shard_count_; ++k)
        to_shards.push_back({k, shard_lost{std::string(reason)}});
}

}  // namespace mqttws
