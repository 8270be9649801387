// Unit tests for core/delivery_pacer on its own (the engine-level flow tests are in
// test_engine_flow.cpp): maxRate's per-topic memory is bounded and swept.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "core/delivery_pacer.hpp"
#include "engine_fixture.hpp"

using namespace mqttws;
using mqttws::test::fake_platform;

namespace {

struct pacer_fixture {
    pacer_fixture() {
        s.attach(1);
        s.authenticate("c", false, "");
    }
    // A QoS 0 message on `topic`, delivered under a subscription with maxRate `rate`.
    void deliver(const std::string& topic, double rate) {
        subscription_options options;
        options.max_rate = rate;
        auto body = std::make_shared<const message_body>("message", topic, "1", false, env.wall);
        pacer.begin_event();  // the socket takes everything between events
        pacer.deliver(s, body, 0, options, out);
    }
    std::size_t remembered() const { return s.pacing().next_send_by_topic.size(); }
    std::size_t sent() const {
        std::size_t n = 0;
        for (const auto& a : out)
            n += std::holds_alternative<send_frame>(a) ? 1 : 0;
        return n;
    }

    fake_platform env;
    engine_context ctx{engine_config{}, env, std::make_shared<const security_policy>()};
    delivery_pacer pacer{ctx};
    session s{session_key{1}, "127.0.0.1"};
    action_list out;
};

}  // namespace

TEST_CASE("delivery_pacer: maxRate holds the second message of a topic within its interval") {
    pacer_fixture f;
    f.deliver("t/a", 2);  // every 500 ms
    f.deliver("t/a", 2);
    CHECK(f.sent() == 1);
    CHECK(f.s.pacing().held.size() == 1);
    f.env.advance(500);
    f.pacer.tick(f.s, f.env.steady, f.out);
    CHECK(f.sent() == 2);
}

TEST_CASE("delivery_pacer: maxRate forgets topics whose interval is over") {
    pacer_fixture f;
    for (int i = 0; i < 100; ++i)
        f.deliver("t/" + std::to_string(i), 1);  // one message each, all sent at once
    CHECK(f.sent() == 100);
    CHECK(f.remembered() == 100);
    f.env.advance(999);
    f.pacer.tick(f.s, f.env.steady, f.out);
    CHECK(f.remembered() == 100);  // still within their second
    f.env.advance(500);
    f.deliver("t/late", 1);
    f.env.advance(500);  // sweeps run once a second: this one finds all but t/late over
    f.pacer.tick(f.s, f.env.steady, f.out);
    CHECK(f.remembered() == 1);
}

TEST_CASE("delivery_pacer: maxRate remembers a bounded number of topics") {
    // A subscription with a tiny rate to a filter matching ever-new topics: without a bound, each
    // topic would be remembered for its whole interval (here, the cap of a day).
    pacer_fixture f;
    const std::size_t cap = delivery_pacer::max_rate_topics;
    for (std::size_t i = 0; i < 3 * cap; ++i) {
        f.deliver("new/" + std::to_string(i), 0.000001);
        CHECK(f.remembered() <= cap);
    }
    CHECK(f.sent() == 3 * cap);  // every topic was new: each message went at once
    CHECK(f.remembered() >= cap / 2);
    // The most recent topic is still limited.
    f.deliver("new/" + std::to_string(3 * cap - 1), 0.000001);
    CHECK(f.sent() == 3 * cap);
}
