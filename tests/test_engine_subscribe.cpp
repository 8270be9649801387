// Unit tests for subscribing in core/engine: the upstream (un)subscribes that clients' requests
// cause, subacks and refused SUBACKs, invalid or shared filters, and the per-client limit.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::engine_config;
using mqttws::op_id;
using mqttws::subscribe_upstream;
using mqttws::test::broker_msg;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::of_type;
using mqttws::test::strings;
using mqttws::test::subscribe_frame;
using mqttws::test::topics_of;
using mqttws::test::unsubscribe_frame;

// ================================================================= subscribe

TEST_CASE("engine subscribe: the first client causes one subscribe_upstream; suback on SUBACK") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");

    SUBCASE("granted below the request: suback says granted") {
        a.send(subscribe_frame("sport/#", 2, "\"s1\""));
        const auto subs = f.subscribes();
        REQUIRE(subs.size() == 1);
        CHECK(subs[0].filter == "sport/#");
        CHECK(subs[0].qos == 2);
        CHECK(subs[0].subscription_id != 0);
        CHECK(subs[0].replay_retained);
        CHECK(a.frames().empty());  // nothing before the broker's SUBACK

        f.upstream_subscribed(subs[0].op, 1);
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "suback");
        CHECK(frames[0].str("msgid") == "s1");
        CHECK(frames[0].str("topic") == "sport/#");
        CHECK(frames[0].num("qos") == 1);
    }
    SUBCASE("granted above the request: suback says requested") {
        a.send(subscribe_frame("sport/#", 1, "9"));
        const auto subs = f.subscribes();
        REQUIRE(subs.size() == 1);
        f.upstream_subscribed(subs[0].op, 2);
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "suback");
        CHECK(frames[0].num("msgid") == 9);
        CHECK(frames[0].num("qos") == 1);
    }
    SUBCASE("a confirmation of an unknown op does nothing") {
        a.send(subscribe_frame("sport/#", 1, "9"));
        const op_id op = f.subscribes().at(0).op;
        f.upstream_subscribed(op + 100, 1);
        CHECK(a.frames().empty());
    }
    CHECK(f.stats().filters == 1);
}

TEST_CASE("engine subscribe: a second client on a confirmed filter gets its suback at once (v5)") {
    engine_fixture f;
    f.upstream_connected();
    f.subscribed(1, "news/#", 1);
    auto b = f.auth(2, "b");
    f.clear();

    b.send(subscribe_frame("news/#", 1, "\"b1\""));
    CHECK(f.subscribes().empty());
    const frame_list frames = b.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "suback");
    CHECK(frames[0].str("msgid") == "b1");
    CHECK(frames[0].str("topic") == "news/#");
    CHECK(frames[0].num("qos") == 1);
    CHECK(f.client(1).frames().empty());
    CHECK(f.stats().filters == 1);
}

TEST_CASE("engine subscribe: a later client's suback says the qos the broker granted") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    a.send(subscribe_frame("news/#", 2, "\"a1\""));
    f.confirm("news/#", 0);  // the broker grants less than asked
    REQUIRE(a.take().size() == 1);
    auto b = f.auth(2, "b");
    f.clear();

    b.send(subscribe_frame("news/#", 1, "\"b1\""));
    CHECK(f.subscribes().empty());
    const frame_list frames = b.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "suback");
    CHECK(frames[0].num("qos") == 0);
}

TEST_CASE("engine subscribe: a second client on a pending filter is answered at its SUBACK (v5)") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    auto b = f.auth(2, "b");
    a.send(subscribe_frame("news/#", 1, "\"a1\""));
    REQUIRE(f.subscribes().size() == 1);
    const subscribe_upstream first = f.subscribes()[0];

    b.send(subscribe_frame("news/#", 1, "\"b1\""));
    CHECK(f.subscribes().size() == 1);  // no second SUBSCRIBE
    CHECK(b.frames().empty());          // and no suback before the broker's

    f.upstream_subscribed(first.op, 1);
    const frame_list fa = a.take();
    const frame_list fb = b.take();
    REQUIRE(fa.size() == 1);
    REQUIRE(fb.size() == 1);
    CHECK(fa[0].type() == "suback");
    CHECK(fa[0].str("msgid") == "a1");
    CHECK(fb[0].type() == "suback");
    CHECK(fb[0].str("msgid") == "b1");
    CHECK(fb[0].num("qos") == 1);
}

TEST_CASE("engine subscribe: a higher qos from a later client re-subscribes with that qos") {
    engine_fixture f;
    f.upstream_connected();
    f.subscribed(1, "x/#", 0);
    const std::uint32_t sid = f.subscription_id("x/#");
    auto b = f.auth(2, "b");
    f.clear();

    b.send(subscribe_frame("x/#", 2, "\"b1\""));
    const auto subs = f.subscribes();
    REQUIRE(subs.size() == 1);
    CHECK(subs[0].filter == "x/#");
    CHECK(subs[0].qos == 2);
    CHECK_FALSE(subs[0].replay_retained);
    CHECK(subs[0].subscription_id == sid);
    CHECK(b.frames().empty());  // answered at the SUBACK of the new SUBSCRIBE

    f.upstream_subscribed(subs[0].op, 2);
    const frame_list fb = b.take();
    REQUIRE(fb.size() == 1);
    CHECK(fb[0].type() == "suback");
    CHECK(fb[0].str("msgid") == "b1");
    CHECK(fb[0].num("qos") == 2);
    CHECK(f.client(1).frames().empty());
}

TEST_CASE("engine subscribe: only the last client leaving unsubscribes upstream") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "x/#", 1);
    auto b = f.subscribed(2, "x/#", 1);
    auto c = f.subscribed(3, "x/#", 1);
    f.clear();

    a.send(unsubscribe_frame("x/#", "\"u1\""));
    const frame_list fa = a.take();
    REQUIRE(fa.size() == 1);
    CHECK(fa[0].type() == "unsuback");
    CHECK(fa[0].str("msgid") == "u1");
    CHECK(fa[0].str("topic") == "x/#");
    CHECK(f.upstream_action_count() == 0);

    SUBCASE("the last one unsubscribes") {
        b.close();
        CHECK(f.upstream_action_count() == 0);
        c.send(unsubscribe_frame("x/#", "\"u3\""));
    }
    SUBCASE("the last one closes") {
        b.send(unsubscribe_frame("x/#"));
        CHECK(f.upstream_action_count() == 0);
        c.close();
    }
    const auto unsubs = f.unsubscribes();
    REQUIRE(unsubs.size() == 1);
    CHECK(unsubs[0].filter == "x/#");
    CHECK(f.subscribes().empty());
    CHECK(f.stats().filters == 0);
}

TEST_CASE("engine subscribe: the highest-qos client leaving lowers the upstream qos") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "x/#", 0);
    auto b = f.subscribed(2, "x/#", 2);
    const std::uint32_t sid = f.subscription_id("x/#");
    f.clear();

    SUBCASE("by unsubscribing") {
        b.send(unsubscribe_frame("x/#"));
    }
    SUBCASE("by closing") {
        b.close();
    }
    const auto subs = f.subscribes();
    REQUIRE(subs.size() == 1);
    CHECK(subs[0].filter == "x/#");
    CHECK(subs[0].qos == 0);
    CHECK(subs[0].subscription_id == sid);
    CHECK_FALSE(subs[0].replay_retained);
    CHECK(f.unsubscribes().empty());
    CHECK(a.frames().empty());
}

TEST_CASE("engine subscribe: a refused SUBACK is a forbidden error and removes the subscription") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    auto b = f.auth(2, "b");
    a.send(subscribe_frame("secret/#", 1, "\"a1\""));
    b.send(subscribe_frame("secret/#", 0, "\"b1\""));
    REQUIRE(f.subscribes().size() == 1);
    const subscribe_upstream sub = f.subscribes()[0];

    f.upstream_subscribed(sub.op, 0x80);
    for (auto* c : {&a, &b}) {
        const frame_list frames = c->take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "error");
        CHECK(frames[0].str("code") == "forbidden");
        CHECK(frames[0].str("topic") == "secret/#");
    }
    CHECK(of_type(f.client(1).frames(), "suback").empty());
    CHECK(f.stats().filters == 0);

    // Nothing reaches them under that filter any more...
    f.upstream_message(broker_msg("secret/x", "hi", 0, false, {sub.subscription_id}));
    CHECK(a.frames().empty());
    CHECK(b.frames().empty());
    // ...and subscribing again is a new upstream SUBSCRIBE.
    f.clear();
    a.send(subscribe_frame("secret/#", 1, "\"a2\""));
    CHECK(f.subscribes().size() == 1);
}

TEST_CASE("engine subscribe: a refused first SUBACK causes no further upstream traffic") {
    // Clients at qos 1 and 0 wait on one SUBSCRIBE the broker refuses: removing them must not
    // re-subscribe at the lower qos, nor unsubscribe a filter the broker never granted.
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    auto b = f.auth(2, "b");
    a.send(subscribe_frame("secret/#", 1, "\"a1\""));
    b.send(subscribe_frame("secret/#", 0, "\"b1\""));
    REQUIRE(f.subscribes().size() == 1);
    const subscribe_upstream sub = f.subscribes()[0];
    f.clear();
    f.upstream_subscribed(sub.op, 0x80);
    CHECK(f.subscribes().empty());
    CHECK(f.unsubscribes().empty());
}

TEST_CASE("engine subscribe: a refused qos raise leaves the granted filter to its holders") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "x/#", 0);
    auto b = f.auth(2, "b");
    f.clear();
    b.send(subscribe_frame("x/#", 2, "\"b1\""));
    REQUIRE(f.subscribes().size() == 1);
    const subscribe_upstream raise = f.subscribes()[0];
    f.clear();
    f.upstream_subscribed(raise.op, 0x80);
    CHECK(of_type(b.take(), "error").size() == 1);
    CHECK(f.subscribes().empty());    // no re-subscribe at the old qos: the broker kept it
    CHECK(f.unsubscribes().empty());  // `a` still holds it
    CHECK(f.stats().filters == 1);
    f.upstream_message(broker_msg("x/1", "still", 0, false, {raise.subscription_id}));
    CHECK(a.take().size() == 1);
}

TEST_CASE(
    "engine subscribe: a client joining during a pending qos raise is answered by its SUBACK") {
    // `a` holds x/# granted qos 0, `b` raises it to 2 (pending); `c` asks for 2 meanwhile: its
    // suback must report what the broker grants for the raise, not the old grant.
    engine_fixture f;
    f.upstream_connected();
    f.subscribed(1, "x/#", 0);
    auto b = f.auth(2, "b");
    auto c = f.auth(3, "c");
    f.clear();
    b.send(subscribe_frame("x/#", 2, "\"b1\""));
    REQUIRE(f.subscribes().size() == 1);
    const subscribe_upstream raise = f.subscribes()[0];
    c.send(subscribe_frame("x/#", 2, "\"c1\""));
    CHECK(c.frames().empty());
    f.upstream_subscribed(raise.op, 2);
    const frame_list fc = c.take();
    REQUIRE(fc.size() == 1);
    CHECK(fc[0].type() == "suback");
    CHECK(fc[0].num("qos") == 2);
}

TEST_CASE("engine subscribe: a refused SUBACK answers the msgid of the waiting request") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    a.send(subscribe_frame("secret/#", 1, "\"a1\""));
    f.confirm("secret/#", 0x87);
    const frame_list frames = a.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].str("code") == "forbidden");
    CHECK(frames[0].str("msgid") == "a1");
}

TEST_CASE("engine subscribe: while the upstream is down nothing is sent until it connects") {
    engine_fixture f;
    auto a = f.auth(1, "a");  // takes the auth_response and the status down frame
    a.send(subscribe_frame("t/#", 1, "\"s\""));
    CHECK(f.upstream_action_count() == 0);
    CHECK(a.frames().empty());

    f.upstream_connected();
    const auto subs = f.subscribes();
    REQUIRE(subs.size() == 1);
    CHECK(subs[0].filter == "t/#");
    CHECK(subs[0].qos == 1);
    CHECK(subs[0].subscription_id != 0);
    CHECK(subs[0].replay_retained);
    CHECK(of_type(a.frames(), "suback").empty());

    f.upstream_subscribed(subs[0].op, 1);
    const frame_list subacks = of_type(a.take(), "suback");
    REQUIRE(subacks.size() == 1);
    CHECK(subacks[0].str("msgid") == "s");
    CHECK(subacks[0].num("qos") == 1);
}

TEST_CASE("engine subscribe: an invalid filter is a bad_request naming the topic") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    for (const std::string filter : {"a/#/b", "sport+", "a/b#", "+x/y"}) {
        CAPTURE(filter);
        a.send(subscribe_frame(filter, 0, "\"bad\""));
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "error");
        CHECK(frames[0].str("code") == "bad_request");
        CHECK(frames[0].str("msgid") == "bad");
        CHECK(frames[0].str("topic") == filter);
    }
    CHECK(f.upstream_action_count() == 0);
    CHECK(f.closes().empty());
}

TEST_CASE("engine subscribe: a shared subscription is unsupported") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    a.send(subscribe_frame("$share/g/t", 0, "1"));
    const frame_list frames = a.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "error");
    CHECK(frames[0].str("code") == "unsupported");
    CHECK(frames[0].str("topic") == "$share/g/t");
    CHECK(f.upstream_action_count() == 0);
}

TEST_CASE("engine subscribe: max_subscriptions_per_client is a too_large error") {
    engine_config config;
    config.subscriptions.max_per_client = 2;
    engine_fixture f(config);
    f.upstream_connected();
    auto a = f.subscribed(1, "a", 0);
    f.subscribed(1, "b", 0);
    f.clear();

    a.send(subscribe_frame("c", 0, "\"c\""));
    const frame_list frames = a.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "error");
    CHECK(frames[0].str("code") == "too_large");
    CHECK(frames[0].str("topic") == "c");
    CHECK(f.upstream_action_count() == 0);
    CHECK(f.stats().filters == 2);

    // Renewing a filter it already holds is not a new subscription.
    a.send(subscribe_frame("a", 0, "\"a\""));
    const frame_list again = a.take();
    REQUIRE(again.size() == 1);
    CHECK(again[0].type() == "suback");
}

TEST_CASE("engine subscribe: a topics array gets one answer per topic") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    a.send(R"({"type":"subscribe","topics":["t/1","t/#/x","t/2"],"qos":1,"msgid":"m"})");

    const frame_list errors = a.take();
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].type() == "error");
    CHECK(errors[0].str("topic") == "t/#/x");
    CHECK(errors[0].str("msgid") == "m");

    const auto subs = f.subscribes();
    REQUIRE(subs.size() == 2);
    CHECK(subs[0].subscription_id != subs[1].subscription_id);
    for (const auto& s : subs)
        f.upstream_subscribed(s.op, 1);
    const frame_list subacks = a.take();
    REQUIRE(subacks.size() == 2);
    for (const auto& s : subacks) {
        CHECK(s.type() == "suback");
        CHECK(s.str("msgid") == "m");
    }
    CHECK(topics_of(subacks) == strings{"t/1", "t/2"});
}
