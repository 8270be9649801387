// What the engine's components share: the configuration, the clock, the security policy in
// force, the broker connection's state, the counters and the id of the next upstream operation.
// The engine owns one; each component keeps a reference and reads or counts what it owns.
// Thread safety: none; the engine's thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/actions.hpp"
#include "core/broker_message.hpp"
#include "core/engine_config.hpp"
#include "core/engine_stats.hpp"
#include "core/platform.hpp"
#include "core/session.hpp"

namespace mqttws {

struct engine_context {
    engine_context(engine_config c, platform& e, std::shared_ptr<const security_policy> p)
        : config(std::move(c)), env(e), policy(std::move(p)) {}

    const engine_config config;
    platform& env;
    std::shared_ptr<const security_policy> policy;  // replaced as a whole on reload
    engine_stats stats;                             // counters; engine::stats() adds gauges
    bool upstream_up = false;                       // the broker connection is up
    bool shutting_down = false;
    op_id next_op = 1;

    const security_policy& security() const { return *policy; }
    op_id new_op() { return next_op++; }
    bool v5() const { return config.broker.mqtt_version >= 5; }
    // With MQTT 5 the bridge subscribes with No Local and delivers what is published through it
    // to its own clients itself: `loopback` holds those messages until the engine routes them,
    // at the end of the event that published them.
    bool local_fanout() const { return v5(); }
    std::vector<broker_message> loopback;

    // One line of the audit trail about `s`.
    void audit(const session& s, std::string event, std::string topic, std::string detail,
               action_list& out) const {
        out.push_back(audit_record{std::move(event), s.client_id(), s.remote_address(),
                                   std::move(topic), std::move(detail)});
    }
};

}  // namespace mqttws
