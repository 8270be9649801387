#include "io/upstream.hpp"

namespace mqttws {
namespace {

struct engine_call {
    engine& core;
    action_list& out;

    void operator()(upstream_connected_event& e) const {
        core.upstream_connected(e.session_present, out);
    }
    void operator()(upstream_lost_event& e) const { core.upstream_lost(e.reason, out); }
    void operator()(broker_message& m) const { core.upstream_message(m, out); }
    void operator()(upstream_subscribed_event& e) const {
        core.upstream_subscribed(e.op, e.granted, out);
    }
    void operator()(upstream_published_event& e) const {
        core.upstream_published(e.op, e.error, e.message, out);
    }
    void operator()(upstream_congestion_event& e) const {
        core.upstream_congestion(e.congested, out);
    }
};

}  // namespace

void pass_to_engine(upstream_event& event, engine& core, action_list& out) {
    std::visit(engine_call{core, out}, event);
}

}  // namespace mqttws
