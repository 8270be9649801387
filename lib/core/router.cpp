#include "core/router.hpp"

#include <algorithm>

namespace mqttws {

bool router::route(const broker_message& m, const std::vector<std::uint32_t>& subscription_ids,
                   action_list& out) {
    const bool by_id = !subscription_ids.empty();
    const bool v3_replay = !by_id && !ctx_.v5() && m.retained;
    const std::uint64_t serial = ++fanout_serial_;
    targets_.clear();
    routed_filters_.clear();
    subscriptions_.routed_filters(m.topic, subscription_ids, routed_filters_);

    bool own = false;
    // `via` is the filter through which `who` was reached.
    const auto consider = [&](session* who, const upstream_filter* via) {
        if (subscriptions_.is_own(who)) {
            own = true;
            return;
        }
        if (who->last_fanout == serial) return;
        who->last_fanout = serial;
        const auto& subs = who->subscriptions();
        // With copies per subscription (v5), only the filters the broker confirmed have one.
        session::subscription_ref best =
            subs.size() == 1
                ? &*subs.begin()
                : who->best_match(m.topic, [by_id](const client_subscription& cs) {
                      return !by_id || (cs.upstream != nullptr && cs.upstream->state.confirmed);
                  });
        if (best == nullptr) best = &*subs.find(via->filter);
        if (by_id && subs.size() > 1 &&
            std::find(routed_filters_.begin(), routed_filters_.end(), best->second.upstream) ==
                routed_filters_.end()) {
            return;  // another copy of this message, tagged with the best filter, reaches it
        }
        targets_.push_back({who, std::min(m.qos, best->second.qos), &best->second.options});
    };

    const std::int64_t now = ctx_.env.steady_ms();
    for (upstream_filter* f : routed_filters_) {
        if (v3_replay) {
            if (f->state.replay_until_ms < now) continue;
            for (session* who : f->state.replay_targets)
                consider(who, f);
        } else {
            const auto& subs = f->subscribers;
            for (std::size_t i = 0; i < subs.size(); ++i) {
                if (i + prefetch_distance < subs.size())
                    subs[i + prefetch_distance].who->prefetch_for_delivery();
                if (i + prefetch_distance / 2 < subs.size())
                    subs[i + prefetch_distance / 2].who->prefetch_first_subscription();
                consider(subs[i].who, f);
            }
        }
    }
    subscriptions_.record_retained(m);

    const std::int64_t timestamp = ctx_.env.wall_ms();
    const std::size_t depth = ctx_.config.decode.max_depth;
    auto body = std::make_shared<const message_body>("message", m.topic, m.payload, m.retained,
                                                     timestamp, depth, m.duplicate);
    // Queued by the broker for a filter of the bridge's previous run: held for the clients that
    // subscribe again shortly.
    if (routed_filters_.empty() && subscriptions_.park(m, body)) return false;
    std::shared_ptr<const message_body> control_body;
    for (std::size_t k = 0; k < targets_.size(); ++k) {
        if (k + 2 * prefetch_distance < targets_.size())
            targets_[k + 2 * prefetch_distance].who->deliveries().prefetch_history_place();
        if (k + prefetch_distance < targets_.size())
            targets_[k + prefetch_distance].who->deliveries().prefetch_history();
        const target& t = targets_[k];
        if (t.who->is_device() && m.topic == t.who->control_topic()) {
            if (auto command = commands_.command_for(*t.who, m)) {
                pacer_.deliver(*t.who, command, std::max<std::uint8_t>(t.qos, 1), *t.options, out,
                               now);
                continue;
            }
            if (!control_body) {
                control_body = std::make_shared<const message_body>(
                    "control", m.topic, m.payload, m.retained, timestamp, depth, m.duplicate);
            }
            pacer_.deliver(*t.who, control_body, t.qos, *t.options, out, now);
        } else {
            pacer_.deliver(*t.who, body, t.qos, *t.options, out, now);
        }
    }
    return own;
}

}  // namespace mqttws
