// Unit tests for core/engine: every routing rule as "frames in → actions out".
//
// Frames the engine sends are parsed as JSON and checked field by field (engine_fixture.hpp),
// so they may gain fields (e.g. `seq`) without breaking these tests.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/credentials.hpp"
#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::engine_config;
using mqttws::errc;
using mqttws::op_id;
using mqttws::send_frame;
using mqttws::subscribe_upstream;
using mqttws::test::broker_msg;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::json_frame;
using mqttws::test::of_type;
using mqttws::test::quoted;
using mqttws::test::subscribe_frame;
using mqttws::test::unsubscribe_frame;
using mqttws::test::v3_config;

namespace {

std::vector<std::string> topics_of(const frame_list& frames) {
    std::vector<std::string> out;
    for (const auto& f : frames)
        out.push_back(f.str("topic"));
    std::sort(out.begin(), out.end());
    return out;
}

using strings = std::vector<std::string>;

}  // namespace

// ================================================================= auth

TEST_CASE("engine auth: clientId is echoed in the auth_response with the msgid") {
    engine_fixture f;
    f.upstream_connected();
    auto c = f.client(1);
    c.send(R"({"type":"auth","clientId":"alice","msgid":"a1"})");

    const frame_list frames = c.take();
    REQUIRE(frames.size() == 1);  // the upstream is up: no status frame
    CHECK(frames[0].type() == "auth_response");
    CHECK(frames[0].str("status") == "success");
    CHECK(frames[0].str("clientId") == "alice");
    CHECK(frames[0].str("msgid") == "a1");
    CHECK(f.upstream_action_count() == 0);  // a plain client subscribes to nothing
}

TEST_CASE("engine auth: deviceId sets device mode and subscribes to devices/<id>/control") {
    engine_fixture f;
    f.upstream_connected();
    f.clear();
    auto c = f.client(1);
    c.send(R"({"type":"auth","deviceId":"dev1","msgid":7})");

    const frame_list frames = c.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "auth_response");
    CHECK(frames[0].str("clientId") == "dev1");
    CHECK(frames[0].num("msgid") == 7);

    const auto subs = f.subscribes();
    REQUIRE(subs.size() == 1);
    CHECK(subs[0].filter == "devices/dev1/control");
    CHECK(subs[0].subscription_id != 0);
    CHECK(f.stats().filters == 1);

    // The control subscription was not asked for by a frame: confirming it sends no suback.
    f.upstream_subscribed(subs[0].op, 0);
    CHECK(c.take().empty());

    // Device mode: a message on the control topic arrives as a `control` frame.
    f.upstream_message(broker_msg("devices/dev1/control", R"({"cmd":"reboot"})", 0, false,
                                  {subs[0].subscription_id}));
    const frame_list got = c.take();
    REQUIRE(got.size() == 1);
    CHECK(got[0].type() == "control");
}

TEST_CASE("engine auth: the device topic prefix comes from engine_config") {
    engine_config config;
    config.device_topic_prefix = "fleet/things";
    engine_fixture f(config);
    f.upstream_connected();
    f.device(1, "d7");
    const auto subs = f.subscribes();
    REQUIRE(subs.size() == 1);
    CHECK(subs[0].filter == "fleet/things/d7/control");
}

TEST_CASE("engine auth: an auth without clientId gets a generated anon- id") {
    engine_fixture f;
    f.upstream_connected();
    auto c = f.client(1);
    c.send(R"({"type":"auth"})");
    const frame_list frames = c.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "auth_response");
    CHECK(frames[0].str("clientId") == "anon-000000000001");
}

TEST_CASE("engine auth: a client that skips auth is given a generated anon- id") {
    engine_fixture f;
    f.upstream_connected();
    auto c = f.client(1);
    c.send(R"({"type":"ping","msgid":1})");
    REQUIRE(c.take().size() == 1);  // the pong: the request was served
    CHECK(f.env.random_calls == 1);

    // It is authenticated now, under the generated id.
    c.send(R"({"type":"auth","clientId":"late","msgid":2})");
    const frame_list frames = c.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "error");
    CHECK(frames[0].str("code") == "bad_request");
    CHECK(frames[0].str("message").find("anon-000000000001") != std::string::npos);
}

TEST_CASE("engine auth: a second auth is refused with bad_request and its msgid echoed") {
    engine_fixture f;
    f.upstream_connected();
    auto c = f.auth(1, "alice");

    SUBCASE("string msgid") {
        c.send(R"({"type":"auth","clientId":"bob","msgid":"again"})");
        const frame_list frames = c.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "error");
        CHECK(frames[0].str("code") == "bad_request");
        CHECK(frames[0].str("msgid") == "again");
    }
    SUBCASE("numeric msgid") {
        c.send(R"({"type":"auth","clientId":"alice","msgid":42})");
        const frame_list frames = c.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "error");
        CHECK(frames[0].str("code") == "bad_request");
        CHECK(frames[0].num("msgid") == 42);
    }
    CHECK(f.closes().empty());
}

TEST_CASE("engine auth: a status down frame follows the auth_response while the upstream is down") {
    engine_fixture f;  // the upstream starts down
    auto c = f.client(1);
    c.send(R"({"type":"auth","clientId":"alice"})");
    const frame_list frames = c.take();
    REQUIRE(frames.size() == 2);
    CHECK(frames[0].type() == "auth_response");
    CHECK(frames[1].type() == "status");
    CHECK(frames[1].str("upstream") == "down");

    SUBCASE("a device too, and its control subscription waits for the upstream") {
        auto d = f.client(2);
        d.send(R"({"type":"auth","deviceId":"dev1"})");
        const frame_list got = d.take();
        REQUIRE(got.size() == 2);
        CHECK(got[0].type() == "auth_response");
        CHECK(got[1].str("upstream") == "down");
        CHECK(f.subscribes().empty());
        f.upstream_connected();
        REQUIRE(f.subscribes().size() == 1);
        CHECK(f.subscribes()[0].filter == "devices/dev1/control");
    }
}

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
    config.max_subscriptions_per_client = 2;
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

// ================================================================= routing, MQTT v5

TEST_CASE("engine routing v5: a tagged message reaches exactly the subscribers of that filter") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "a/+");
    auto a2 = f.subscribed(4, "a/+");
    auto b = f.subscribed(2, "a/b");
    auto c = f.subscribed(3, "#");

    f.upstream_message(broker_msg("a/b", "x", 0, false, {f.subscription_id("a/+")}));
    CHECK(a.take().size() == 1);
    CHECK(a2.take().size() == 1);
    CHECK(b.frames().empty());
    CHECK(c.frames().empty());

    f.upstream_message(broker_msg("a/b", "x", 0, false, {f.subscription_id("a/b")}));
    const frame_list got = b.take();
    REQUIRE(got.size() == 1);
    CHECK(got[0].type() == "message");
    CHECK(got[0].str("topic") == "a/b");
    CHECK(got[0].str("payload") == "x");
    CHECK(a.frames().empty());
    CHECK(a2.frames().empty());
    CHECK(c.frames().empty());
}

TEST_CASE("engine routing v5: a client holding a/# and a/b receives one frame of two copies") {
    engine_fixture f;
    f.upstream_connected();
    auto both = f.subscribed(1, "a/#");
    f.subscribed(1, "a/b");
    auto only_b = f.subscribed(2, "a/b");
    auto only_all = f.subscribed(3, "a/#");
    const std::uint32_t wide = f.subscription_id("a/#");
    const std::uint32_t narrow = f.subscription_id("a/b");
    REQUIRE(wide != narrow);

    SUBCASE("two copies, one tag each") {
        SUBCASE("wide first") {
            f.upstream_message(broker_msg("a/b", "1", 0, false, {wide}));
            f.upstream_message(broker_msg("a/b", "1", 0, false, {narrow}));
        }
        SUBCASE("narrow first") {
            f.upstream_message(broker_msg("a/b", "1", 0, false, {narrow}));
            f.upstream_message(broker_msg("a/b", "1", 0, false, {wide}));
        }
    }
    SUBCASE("one copy with both tags") {
        f.upstream_message(broker_msg("a/b", "1", 0, false, {wide, narrow}));
    }
    CHECK(both.take().size() == 1);
    CHECK(only_b.take().size() == 1);
    CHECK(only_all.take().size() == 1);
}

TEST_CASE("engine routing v5: adding an overlapping filter loses nothing while it is pending") {
    // The client holds "a/b"; it adds "a/#". Until the broker has handled that SUBSCRIBE it
    // sends only the copy tagged with "a/b"; the client must still receive the message, once.
    engine_fixture f;
    f.upstream_connected();
    std::uint8_t wide_qos = 0;
    SUBCASE("same qos (a/# sorts first)") {
        wide_qos = 0;
    }
    SUBCASE("higher qos") {
        wide_qos = 1;
    }
    auto c = f.subscribed(1, "a/b", 0);
    const std::uint32_t narrow = f.subscription_id("a/b");
    c.send(subscribe_frame("a/#", wide_qos, "\"w\""));
    REQUIRE(f.subscribes().size() == 2);

    f.upstream_message(broker_msg("a/b", "before", 0, false, {narrow}));
    CHECK(c.of_type("message").size() == 1);
    c.take();

    // Once the broker knows both, one of the two copies is delivered.
    f.confirm("a/#", wide_qos);
    c.take();
    const std::uint32_t wide = f.subscription_id("a/#");
    f.upstream_message(broker_msg("a/b", "after", wide_qos, false, {narrow}));
    f.upstream_message(broker_msg("a/b", "after", wide_qos, false, {wide}));
    CHECK(c.of_type("message").size() == 1);
}

TEST_CASE("engine routing v5: the qos delivered is min(message qos, best subscription qos)") {
    engine_fixture f;
    f.upstream_connected();

    SUBCASE("one filter") {
        auto a = f.subscribed(1, "q/#", 1);
        const std::uint32_t sid = f.subscription_id("q/#");
        f.upstream_message(broker_msg("q/1", "x", 2, false, {sid}));
        f.upstream_message(broker_msg("q/1", "x", 0, false, {sid}));
        f.upstream_message(broker_msg("q/1", "x", 1, false, {sid}));
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 3);
        CHECK(frames[0].num("qos") == 1);
        CHECK(frames[1].num("qos") == 0);
        CHECK(frames[2].num("qos") == 1);
    }
    SUBCASE("the best of two overlapping filters") {
        auto b = f.subscribed(2, "q/#", 0);
        f.subscribed(2, "q/1", 2);
        // The broker sends one copy per subscription, at the qos of that subscription.
        f.upstream_message(broker_msg("q/1", "x", 0, false, {f.subscription_id("q/#")}));
        f.upstream_message(broker_msg("q/1", "x", 2, false, {f.subscription_id("q/1")}));
        const frame_list frames = b.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].num("qos") == 2);
    }
}

TEST_CASE("engine routing v5: a message with an unknown subscription id is dropped") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "#");
    const std::uint32_t sid = f.subscription_id("#");
    f.clear();
    f.upstream_message(broker_msg("any/topic", "x", 1, false, {sid + 1000}));
    CHECK(a.frames().empty());
    CHECK(f.sends().empty());
    CHECK(f.stats().messages_in == 1);
    CHECK(f.stats().deliveries == 0);
}

TEST_CASE("engine routing v5: qos 0 recipients share the very same frame") {
    engine_fixture f;
    f.upstream_connected();
    for (mqttws::connection_id id = 1; id <= 4; ++id)
        f.subscribed(id, "fan/#", 0);
    auto one = f.subscribed(5, "fan/#", 1);
    f.clear();

    f.upstream_message(broker_msg("fan/x", R"({"v":1})", 1, false, {f.subscription_id("fan/#")}));
    const auto sends = f.sends();
    REQUIRE(sends.size() == 5);
    std::vector<const std::string*> qos0;
    const std::string* qos1 = nullptr;
    for (const send_frame& s : sends) {
        if (s.to == one.id()) {
            qos1 = s.frame.get();
        } else {
            qos0.push_back(s.frame.get());
        }
    }
    REQUIRE(qos0.size() == 4);
    for (const auto* p : qos0)
        CHECK(p == qos0[0]);
    CHECK(qos1 != nullptr);
    CHECK(qos1 != qos0[0]);
    CHECK(f.stats().deliveries == 5);
}

TEST_CASE("engine routing v5: qos >= 1 deliveries carry a numeric msgid increasing per session") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "m/#", 2);
    auto b = f.subscribed(2, "m/#", 1);
    const std::uint32_t sid = f.subscription_id("m/#");
    for (int i = 0; i < 3; ++i)
        f.upstream_message(broker_msg("m/" + std::to_string(i), "x", 2, false, {sid}));

    for (auto* c : {&a, &b}) {
        const frame_list frames = c->take();
        REQUIRE(frames.size() == 3);
        std::int64_t previous = 0;
        for (const auto& m : frames) {
            CHECK(m.num("qos") >= 1);
            REQUIRE(m.num("msgid") != json_frame::missing);
            CHECK(m.num("msgid") > previous);
            previous = m.num("msgid");
        }
    }
}

// ================================================================= routing, MQTT 3.1.1

TEST_CASE("engine routing v3: untagged messages are matched with the trie, each client once") {
    engine_fixture f(v3_config());
    f.upstream_connected();
    auto exact = f.subscribed(1, "sensors/k/temp");
    auto plus = f.subscribed(2, "sensors/+/temp");
    auto hash = f.subscribed(3, "sensors/#");
    auto all = f.subscribed(4, "#");
    auto sys = f.subscribed(5, "$SYS/#");
    auto lead_plus = f.subscribed(6, "+/broker/#");
    auto several = f.subscribed(7, "sensors/#");
    f.subscribed(7, "sensors/+/temp");
    f.subscribed(7, "#");

    for (const auto& s : f.subscribes())
        CHECK(s.subscription_id == 0);  // no subscription identifiers with 3.1.1

    f.upstream_message(broker_msg("sensors/k/temp", "21"));
    CHECK(exact.take().size() == 1);
    CHECK(plus.take().size() == 1);
    CHECK(hash.take().size() == 1);
    CHECK(all.take().size() == 1);
    CHECK(several.take().size() == 1);
    CHECK(sys.frames().empty());
    CHECK(lead_plus.frames().empty());

    f.upstream_message(broker_msg("$SYS/broker/load", "3"));
    CHECK(sys.take().size() == 1);
    CHECK(all.frames().empty());        // '#' does not match a '$' topic
    CHECK(lead_plus.frames().empty());  // nor does a leading '+'
    CHECK(several.frames().empty());

    f.upstream_message(broker_msg("x/broker/y", "3"));
    CHECK(lead_plus.take().size() == 1);
    CHECK(all.take().size() == 1);
    CHECK(several.take().size() == 1);
    CHECK(sys.frames().empty());
    CHECK(hash.frames().empty());
}

TEST_CASE("engine routing v3: the delivered qos is min(message qos, best subscription qos)") {
    engine_fixture f(v3_config());
    f.upstream_connected();
    auto a = f.subscribed(1, "q/#", 0);
    f.subscribed(1, "q/+", 1);
    f.upstream_message(broker_msg("q/1", "x", 2));
    const frame_list frames = a.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].num("qos") == 1);
}

TEST_CASE("engine routing v3: a second client joining a held filter subscribes upstream again") {
    engine_fixture f(v3_config());
    f.upstream_connected();
    f.subscribed(1, "t/#", 1);
    auto b = f.auth(2, "b");
    f.clear();

    b.send(subscribe_frame("t/#", 1, "\"b1\""));
    const auto subs = f.subscribes();
    REQUIRE(subs.size() == 1);
    CHECK(subs[0].filter == "t/#");
    CHECK(subs[0].replay_retained);
    CHECK(b.frames().empty());
    f.upstream_subscribed(subs[0].op, 1);
    const frame_list frames = b.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "suback");
    CHECK(frames[0].str("msgid") == "b1");
    CHECK(f.client(1).frames().empty());
}

TEST_CASE("engine routing v3: retained replays go to the clients that caused them, for a while") {
    // Mosquitto answers a SUBSCRIBE with its SUBACK and then replays the retained messages; the
    // engine routes a retained message to the clients whose SUBSCRIBE was answered last.
    engine_config config = v3_config();
    config.retained_grace_ms = 500;
    engine_fixture f(config);
    f.upstream_connected();
    auto a = f.auth(1, "a");
    auto b = f.auth(2, "b");

    a.send(subscribe_frame("t/#", 0, "1"));
    f.confirm("t/#", 0);
    f.upstream_message(broker_msg("t/1", "r1", 0, true));
    f.advance(499);
    f.tick();
    f.upstream_message(broker_msg("t/2", "r2", 0, true));  // still inside the window
    {
        const frame_list got = of_type(a.take(), "message");
        REQUIRE(got.size() == 2);
        CHECK(got[0].json("retain") == "true");
        CHECK(got[1].str("topic") == "t/2");
    }

    // `b` joins while `a`'s window is still open: another SUBSCRIBE, whose replay goes to `b`
    // only — `a` has these messages already.
    b.send(subscribe_frame("t/#", 0, "2"));
    REQUIRE(f.subscribes().size() == 2);
    f.confirm("t/#", 0);
    CHECK(of_type(b.take(), "suback").size() == 1);
    f.upstream_message(broker_msg("t/1", "r1", 0, true));
    CHECK(a.frames().empty());
    {
        const frame_list got = b.take();
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("topic") == "t/1");
        CHECK(got[0].json("retain") == "true");
    }

    // Live messages (no retain flag with 3.1.1) go to both all along.
    f.upstream_message(broker_msg("t/3", "live", 0, false));
    CHECK(a.take().size() == 1);
    CHECK(b.take().size() == 1);

    // Past the window, a message with the retain flag reaches nobody.
    SUBCASE("tick") {
        f.advance(501);
        f.tick();
    }
    SUBCASE("no tick") {
        f.advance(501);
    }
    f.upstream_message(broker_msg("t/1", "r1", 0, true));
    CHECK(a.frames().empty());
    CHECK(b.frames().empty());
}

// ================================================================= retained, MQTT v5

TEST_CASE("engine retained v5: a client joining a confirmed filter gets the stored messages") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "r/#", 1);
    const std::uint32_t sid = f.subscription_id("r/#");
    f.upstream_message(broker_msg("r/1", "one", 1, true, {sid}));
    f.upstream_message(broker_msg("r/2", R"({"n":2})", 0, true, {sid}));
    f.upstream_message(broker_msg("r/3", "live", 1, false, {sid}));  // not retained: not stored
    CHECK(a.take().size() == 3);
    CHECK(f.stats().retained_cached == 2);
    auto b = f.auth(2, "b");
    f.clear();

    b.send(subscribe_frame("r/#", 1, "\"b1\""));
    CHECK(f.subscribes().empty());
    const frame_list frames = b.take();
    CHECK(of_type(frames, "suback").size() == 1);
    const frame_list messages = of_type(frames, "message");
    REQUIRE(messages.size() == 2);
    CHECK(topics_of(messages) == strings{"r/1", "r/2"});
    for (const auto& m : messages) {
        CHECK(m.json("retain") == "true");
        if (m.str("topic") == "r/1") {
            CHECK(m.str("payload") == "one");
            CHECK(m.num("qos") == 1);
        } else {
            CHECK(m.json("payload") == R"({"n":2})");
            CHECK(m.num("qos") == 0);
        }
    }
    CHECK(a.frames().empty());  // the existing subscriber is not sent them again
}

TEST_CASE("engine retained v5: an empty retained payload deletes the stored message") {
    engine_fixture f;
    f.upstream_connected();
    f.subscribed(1, "r/#");
    const std::uint32_t sid = f.subscription_id("r/#");
    f.upstream_message(broker_msg("r/1", "one", 0, true, {sid}));
    f.upstream_message(broker_msg("r/2", "two", 0, true, {sid}));
    f.upstream_message(broker_msg("r/1", "", 0, true, {sid}));
    CHECK(f.stats().retained_cached == 1);

    auto b = f.auth(2, "b");
    b.send(subscribe_frame("r/#"));
    const frame_list messages = of_type(b.take(), "message");
    CHECK(topics_of(messages) == strings{"r/2"});
}

TEST_CASE("engine retained v5: topics no held filter covers are dropped with the last subscriber") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "r/#");
    f.subscribed(2, "r/1");
    const std::uint32_t wide = f.subscription_id("r/#");
    const std::uint32_t narrow = f.subscription_id("r/1");
    f.upstream_message(broker_msg("r/1", "one", 0, true, {wide, narrow}));
    f.upstream_message(broker_msg("r/2", "two", 0, true, {wide}));
    REQUIRE(f.stats().retained_cached == 2);
    f.clear();

    a.send(unsubscribe_frame("r/#"));
    REQUIRE(f.unsubscribes().size() == 1);
    CHECK(f.stats().retained_cached == 1);  // r/1 is still held through "r/1"

    // A new filter: the joiner gets only what the broker replays, nothing from the store.
    auto d = f.auth(4, "d");
    d.send(subscribe_frame("r/+", 0, "\"d\""));
    REQUIRE(f.subscribes().size() == 1);
    CHECK(f.subscribes()[0].replay_retained);
    f.confirm("r/+", 0);
    {
        const frame_list frames = d.take();
        CHECK(of_type(frames, "suback").size() == 1);
        CHECK(of_type(frames, "message").empty());
    }
    const std::uint32_t plus = f.subscription_id("r/+");
    f.upstream_message(broker_msg("r/2", "two", 0, true, {plus}));
    CHECK(topics_of(of_type(d.take(), "message")) == strings{"r/2"});
    CHECK(f.stats().retained_cached == 2);  // stored again: r/+ holds it now
}

TEST_CASE(
    "engine retained v5: a topic whose only filter was released is not served from the store") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "r/#");
    f.subscribed(2, "r/1");
    const std::uint32_t wide = f.subscription_id("r/#");
    f.upstream_message(broker_msg("r/1", "one", 0, true, {wide}));
    f.upstream_message(broker_msg("r/2", "two", 0, true, {wide}));
    a.close();  // releases "r/#": r/2 is no longer kept up to date, r/1 is (through "r/1")
    // A later holder of "r/+" (confirmed, no replay fed in here): a joiner of it gets r/1 from
    // the store, but no stale r/2.
    f.subscribed(3, "r/+");
    auto e = f.auth(5, "e");
    e.send(subscribe_frame("r/+"));
    CHECK(topics_of(of_type(e.take(), "message")) == strings{"r/1"});
}

// ================================================================= payload embedding

TEST_CASE("engine message frames: JSON embedded as a value, text as a string, binary as base64") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "p/#");
    const std::uint32_t sid = f.subscription_id("p/#");

    SUBCASE("JSON object") {
        f.upstream_message(broker_msg("p/j", R"({"temp":21.5,"tags":["a","b"]})", 0, false, {sid}));
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        const auto& payload = frames[0].at("payload");
        REQUIRE(payload.IsObject());
        REQUIRE(payload.HasMember("temp"));
        CHECK(payload["temp"].GetDouble() == doctest::Approx(21.5));
        REQUIRE(payload["tags"].IsArray());
        CHECK(payload["tags"].Size() == 2);
        CHECK_FALSE(frames[0].has("encoding"));
    }
    SUBCASE("JSON number") {
        f.upstream_message(broker_msg("p/n", "42", 0, false, {sid}));
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].num("payload") == 42);
    }
    SUBCASE("text") {
        f.upstream_message(broker_msg("p/t", "hello \"world\"", 0, false, {sid}));
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].str("payload") == "hello \"world\"");
        CHECK_FALSE(frames[0].has("encoding"));
    }
    SUBCASE("binary") {
        f.upstream_message(broker_msg("p/b", std::string("\x00\xff\x10", 3), 0, false, {sid}));
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].str("payload") == "AP8Q");
        CHECK(frames[0].str("encoding") == "base64");
    }
}

// ================================================================= device dialect

TEST_CASE("engine device: status is published retained at qos 1 and acked when msgid is given") {
    engine_fixture f;
    f.upstream_connected();
    auto d = f.device(1, "dev1");
    f.clear();

    d.send(
        R"({ "type" : "status", "deviceId" : "dev1", "data" : { "temp" : 21 }, "msgid" : "m1" })");
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);
    CHECK(pubs[0].topic == "devices/dev1/status");
    CHECK(pubs[0].qos == 1);
    CHECK(pubs[0].retain);
    // The payload is the frame, re-serialised compactly.
    CHECK(pubs[0].payload.find(' ') == std::string::npos);
    const json_frame payload(mqttws::make_frame(pubs[0].payload));
    CHECK(payload.type() == "status");
    CHECK(payload.str("deviceId") == "dev1");
    CHECK(payload.json("data") == R"({"temp":21})");
    CHECK(d.frames().empty());  // acked when the broker confirms

    f.upstream_published(pubs[0].op);
    const frame_list frames = d.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "ack");
    CHECK(frames[0].str("status") == "ok");
    CHECK(frames[0].str("msgid") == "m1");
}

TEST_CASE("engine device: event is published not retained, and without msgid is not acked") {
    engine_config config;
    config.device_topic_prefix = "things";
    engine_fixture f(config);
    f.upstream_connected();
    auto d = f.device(1, "dev1");
    f.clear();

    d.send(R"({"type":"event","deviceId":"dev1","data":{"door":"open"}})");
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);
    CHECK(pubs[0].topic == "things/dev1/event");
    CHECK(pubs[0].qos == 1);
    CHECK_FALSE(pubs[0].retain);
    const json_frame payload(mqttws::make_frame(pubs[0].payload));
    CHECK(payload.type() == "event");
    CHECK(payload.json("data") == R"({"door":"open"})");

    f.upstream_published(pubs[0].op);
    CHECK(d.frames().empty());
}

TEST_CASE("engine device: reporting as another device is forbidden") {
    engine_fixture f;
    f.upstream_connected();
    auto d = f.device(1, "dev1");
    f.clear();
    d.send(R"({"type":"status","deviceId":"dev2","data":{},"msgid":5})");
    CHECK(f.publishes().empty());
    const frame_list frames = d.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "error");
    CHECK(frames[0].str("code") == "forbidden");
    CHECK(frames[0].num("msgid") == 5);
}

TEST_CASE("engine device: a message on the device's control topic is a control frame") {
    engine_fixture f;
    f.upstream_connected();
    auto d = f.device(1, "dev1");
    f.confirm("devices/dev1/control", 0);
    auto monitor = f.subscribed(2, "devices/+/control");
    const std::uint32_t control = f.subscription_id("devices/dev1/control");
    const std::uint32_t watch = f.subscription_id("devices/+/control");
    f.clear();

    f.upstream_message(
        broker_msg("devices/dev1/control", R"({"cmd":"reboot"})", 0, false, {control, watch}));
    const frame_list fd = d.take();
    REQUIRE(fd.size() == 1);
    CHECK(fd[0].type() == "control");
    CHECK(fd[0].str("topic") == "devices/dev1/control");
    CHECK(fd[0].json("payload") == R"({"cmd":"reboot"})");
    const frame_list fm = monitor.take();
    REQUIRE(fm.size() == 1);
    CHECK(fm[0].type() == "message");
}

// ================================================================= publish

TEST_CASE("engine publish: the exact payload bytes are published") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    f.clear();

    std::string expected;
    SUBCASE("a string, raw") {
        a.send(R"({"type":"publish","topic":"t/1","payload":"he said \"hi\"\n"})");
        expected = "he said \"hi\"\n";
    }
    SUBCASE("an object, as compact JSON") {
        a.send(R"({"type":"publish","topic":"t/1","payload": { "a" : [1, 2], "b" : null } })");
        expected = R"({"a":[1,2],"b":null})";
    }
    SUBCASE("base64, decoded") {
        a.send(R"({"type":"publish","topic":"t/1","payload":"AP8Q","encoding":"base64"})");
        expected = std::string("\x00\xff\x10", 3);
    }
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);
    CHECK(pubs[0].topic == "t/1");
    CHECK(pubs[0].payload == expected);
    CHECK(pubs[0].qos == 0);
    CHECK_FALSE(pubs[0].retain);
    CHECK(a.frames().empty());  // qos 0: no ack
    CHECK(f.stats().publishes == 1);
}

TEST_CASE("engine publish: qos >= 1 is acked when the broker confirms, or fails with its code") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    f.clear();
    a.send(R"({"type":"publish","topic":"t/1","payload":"x","qos":1,"retain":true,"msgid":"p1"})");
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);
    CHECK(pubs[0].qos == 1);
    CHECK(pubs[0].retain);
    CHECK(a.frames().empty());

    SUBCASE("confirmed") {
        f.upstream_published(pubs[0].op);
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "ack");
        CHECK(frames[0].str("status") == "ok");
        CHECK(frames[0].str("msgid") == "p1");
    }
    SUBCASE("failed") {
        f.upstream_published(pubs[0].op, errc::timeout, "no PUBACK");
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "ack");
        CHECK(frames[0].str("status") == "error");
        CHECK(frames[0].str("code") == "timeout");
        CHECK(frames[0].str("msgid") == "p1");
    }
    // A second confirmation of the same op is ignored.
    f.upstream_published(pubs[0].op);
    CHECK(a.frames().empty());
}

TEST_CASE("engine publish: an invalid topic is refused (ack error for qos >= 1, error for qos 0)") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    f.clear();
    for (const std::string topic : {"a/+/b", "a/#", ""}) {
        CAPTURE(topic);
        a.send(R"({"type":"publish","topic":")" + topic + R"(","payload":"x","qos":1,"msgid":3})");
        const frame_list acks = a.take();
        REQUIRE(acks.size() == 1);
        CHECK(acks[0].type() == "ack");
        CHECK(acks[0].str("status") == "error");
        CHECK(acks[0].str("code") == "bad_request");
        CHECK(acks[0].num("msgid") == 3);

        a.send(R"({"type":"publish","topic":")" + topic + R"(","payload":"x","msgid":4})");
        const frame_list errors = a.take();
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].type() == "error");
        CHECK(errors[0].str("code") == "bad_request");
        CHECK(errors[0].num("msgid") == 4);
    }
    CHECK(f.publishes().empty());
    CHECK(f.closes().empty());
}

TEST_CASE("engine publish: while the upstream is down qos 0 is dropped and qos >= 1 queued") {
    engine_fixture f;
    auto a = f.auth(1, "a");
    f.clear();

    a.send(R"({"type":"publish","topic":"t/0","payload":"zero"})");
    a.send(R"({"type":"publish","topic":"t/1","payload":"one","qos":1,"msgid":"q1"})");
    a.send(R"({"type":"publish","topic":"t/2","payload":"two","qos":2,"msgid":"q2"})");
    CHECK(f.upstream_action_count() == 0);
    CHECK(a.frames().empty());
    CHECK(f.stats().publishes_dropped == 1);
    CHECK(f.stats().offline_queued == 2);

    f.upstream_connected();
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 2);
    CHECK(pubs[0].topic == "t/1");
    CHECK(pubs[0].payload == "one");
    CHECK(pubs[0].qos == 1);
    CHECK(pubs[1].topic == "t/2");
    CHECK(pubs[1].qos == 2);
    CHECK(pubs[0].op != pubs[1].op);
    CHECK(f.stats().offline_queued == 0);
    a.take();  // the status up frame

    f.upstream_published(pubs[1].op);
    f.upstream_published(pubs[0].op);
    const frame_list acks = of_type(a.take(), "ack");
    REQUIRE(acks.size() == 2);
    CHECK(acks[0].str("msgid") == "q2");
    CHECK(acks[1].str("msgid") == "q1");
    CHECK(acks[0].str("status") == "ok");
    CHECK(acks[1].str("status") == "ok");
}

TEST_CASE("engine publish: a full offline queue refuses with an unavailable ack") {
    engine_config config;
    config.offline_queue_messages = 2;
    engine_fixture f(config);
    auto a = f.auth(1, "a");
    f.clear();
    for (int i = 1; i <= 3; ++i) {
        a.send(R"({"type":"publish","topic":"t","payload":"x","qos":1,"msgid":)" +
               std::to_string(i) + "}");
    }
    const frame_list frames = a.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "ack");
    CHECK(frames[0].str("status") == "error");
    CHECK(frames[0].str("code") == "unavailable");
    CHECK(frames[0].num("msgid") == 3);
    CHECK(f.stats().publishes_refused == 1);
    CHECK(f.stats().offline_queued == 2);

    f.upstream_connected();
    CHECK(f.publishes().size() == 2);
}

// ================================================================= upstream state

TEST_CASE("engine upstream: losing the broker sends status down to every authenticated client") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    auto b = f.device(2, "dev");
    auto silent = f.open(3);  // never sent a frame: not authenticated
    f.clear();

    f.upstream_lost("connection reset");
    for (auto* c : {&a, &b}) {
        const frame_list frames = c->take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "status");
        CHECK(frames[0].str("upstream") == "down");
    }
    CHECK(silent.frames().empty());
    CHECK_FALSE(f.stats().upstream_up);
    CHECK(f.closes().empty());
}

TEST_CASE("engine upstream: reconnecting subscribes every held filter again and sends status up") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "x/#", 1);
    f.subscribed(1, "y", 0);
    auto b = f.subscribed(2, "x/#", 1);
    auto c = f.auth(3, "c");
    const std::uint32_t sid_x = f.subscription_id("x/#");
    const std::uint32_t sid_y = f.subscription_id("y");
    f.upstream_lost("gone");
    f.clear();

    f.upstream_connected();
    const auto subs = f.subscribes();
    REQUIRE(subs.size() == 2);
    std::vector<std::string> filters;
    for (const auto& s : subs) {
        filters.push_back(s.filter);
        CHECK(s.replay_retained);
        CHECK(s.subscription_id == (s.filter == "x/#" ? sid_x : sid_y));
        CHECK(s.qos == (s.filter == "x/#" ? 1 : 0));
    }
    std::sort(filters.begin(), filters.end());
    CHECK(filters == strings{"x/#", "y"});
    for (auto* cl : {&a, &b, &c}) {
        const frame_list frames = cl->take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "status");
        CHECK(frames[0].str("upstream") == "up");
    }
    CHECK(f.stats().upstream_up);
    CHECK(f.stats().upstream_connects == 2);

    // Confirmations send no new subacks; messages route as before.
    for (const auto& s : subs)
        f.upstream_subscribed(s.op, s.qos);
    CHECK(a.frames().empty());
    f.upstream_message(broker_msg("x/1", "v", 1, false, {sid_x}));
    CHECK(a.take().size() == 1);
    CHECK(b.take().size() == 1);
}

TEST_CASE("engine upstream: a suback pending when the broker went away comes after reconnecting") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    a.send(subscribe_frame("w", 1, "\"w\""));
    const op_id lost_op = f.subscribes().at(0).op;
    f.upstream_lost("gone");
    f.upstream_subscribed(lost_op, 1);  // late answer from the old connection: ignored
    CHECK(of_type(a.frames(), "suback").empty());
    f.clear();

    f.upstream_connected();
    REQUIRE(f.subscribes().size() == 1);
    f.upstream_subscribed(f.subscribes()[0].op, 1);
    const frame_list subacks = of_type(a.take(), "suback");
    REQUIRE(subacks.size() == 1);
    CHECK(subacks[0].str("msgid") == "w");
}

// ================================================================= lifecycle

TEST_CASE("engine lifecycle: shutdown closes every session with 1001") {
    engine_fixture f;
    f.upstream_connected();
    f.auth(1, "a");
    f.subscribed(2, "x");
    f.open(3);
    f.clear();

    f.shutdown();
    const auto closes = f.closes();
    REQUIRE(closes.size() == 3);
    std::vector<mqttws::connection_id> who;
    for (const auto& c : closes) {
        who.push_back(c.who);
        CHECK(static_cast<int>(c.code) == 1001);
    }
    std::sort(who.begin(), who.end());
    CHECK(who == std::vector<mqttws::connection_id>{1, 2, 3});
}

TEST_CASE("engine lifecycle: client_closed cleans up its session and filters") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.subscribed(1, "x");
    f.subscribed(1, "y/#");
    auto d = f.device(2, "dev");
    CHECK(f.stats().connections == 2);
    CHECK(f.stats().filters == 3);
    f.clear();

    a.close();
    d.close();
    CHECK(f.stats().connections == 0);
    CHECK(f.stats().filters == 0);
    std::vector<std::string> filters;
    for (const auto& u : f.unsubscribes())
        filters.push_back(u.filter);
    std::sort(filters.begin(), filters.end());
    CHECK(filters == strings{"devices/dev/control", "x", "y/#"});

    // Events for a closed session are ignored.
    f.clear();
    f.client_text(1, R"({"type":"ping"})");
    CHECK(f.actions().empty());
}

// ================================================================= other requests

TEST_CASE("engine ping: pong with the msgid") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    a.send(R"({"type":"ping","msgid":"p"})");
    const frame_list frames = a.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "pong");
    CHECK(frames[0].str("msgid") == "p");
    CHECK(frames[0].num("timestamp") == f.env.wall);
}

TEST_CASE("engine decode errors: answered with an error frame, the connection stays open") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    f.clear();

    struct bad_frame {
        const char* text;
        const char* code;
        const char* msgid_json;  // "<missing>" when the error cannot carry one
    };
    const bad_frame cases[] = {
        {"not json", "bad_request", "<missing>"},
        {"[1,2]", "bad_request", "<missing>"},
        {R"({"msgid":"n"})", "bad_request", "\"n\""},
        {R"({"type":"teleport","msgid":5})", "unsupported", "5"},
        {R"({"type":"subscribe","msgid":"s"})", "bad_request", "\"s\""},
        {R"({"type":"publish","topic":"t","qos":1})", "bad_request", "<missing>"},
        {R"({"type":"subscribe","topic":"t","qos":3,"msgid":6})", "bad_request", "6"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        a.send(c.text);
        const frame_list frames = a.take();
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type() == "error");
        CHECK(frames[0].str("code") == c.code);
        CHECK(frames[0].json("msgid") == c.msgid_json);
    }
    CHECK(f.closes().empty());
    CHECK(f.upstream_action_count() == 0);

    a.send(R"({"type":"ping","msgid":1})");
    const frame_list frames = a.take();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type() == "pong");
}

// A policy with a password file of one user, bob, whose password is "hunter2"
// (mosquitto_passwd output, as in test_credentials.cpp).
std::shared_ptr<mqttws::security_policy> bob_password_policy() {
    auto parsed = mqttws::password_file::parse(
        "bob:$7$101$7TJU3kLTbYLXbNac$7R5b7FXX5ZkMkJs23jVP2mYLleOJGeql73vMC50bM3aJ2OQsUeq5xKnkInp0Rt"
        "JZ/ukuUwdUcXQkDHbhT6ORYQ==\n");
    REQUIRE(std::holds_alternative<mqttws::password_file>(parsed));
    auto policy = std::make_shared<mqttws::security_policy>();
    policy->auth = mqttws::authenticator(
        std::make_shared<const mqttws::password_file>(std::get<mqttws::password_file>(parsed)),
        nullptr, false, false);
    return policy;
}

TEST_CASE("engine auth: failed attempts are limited per IP address, whatever the port") {
    auto policy = bob_password_policy();
    engine_config config;
    config.auth_failures_per_minute = 2;
    engine_fixture f(config);
    mqttws::action_list ignored;
    f.eng.set_security(policy, ignored);
    f.upstream_connected();

    mqttws::connection_id next = 1;
    // The close code the attempt from `remote` ends with.
    auto attempt = [&](const std::string& remote) {
        f.clear_actions();
        auto c = f.open(next++, remote);
        c.send(R"({"type":"auth","clientId":"bob","password":"wrong"})");
        const auto closes = f.closes();
        REQUIRE(closes.size() == 1);
        return closes[0].code;
    };
    using mqttws::close_code;
    SUBCASE("IPv4: the port does not make a new address") {
        CHECK(attempt("192.0.2.7:1000") == close_code::auth_failed);
        CHECK(attempt("192.0.2.7:1001") == close_code::auth_failed);
        CHECK(attempt("192.0.2.7:1002") == close_code::auth_rate_limited);
        CHECK(attempt("192.0.2.8:1000") == close_code::auth_failed);
    }
    SUBCASE("IPv6 in brackets with a port") {
        CHECK(attempt("[2001:db8::7]:1000") == close_code::auth_failed);
        CHECK(attempt("[2001:db8::7]:1001") == close_code::auth_failed);
        CHECK(attempt("[2001:db8::7]:1002") == close_code::auth_rate_limited);
        CHECK(attempt("[2001:db8::8]:1000") == close_code::auth_failed);
    }
    SUBCASE("bare IPv6 from X-Forwarded-For: the last group is not a port") {
        CHECK(attempt("2001:db8::7") == close_code::auth_failed);
        CHECK(attempt("2001:db8::7") == close_code::auth_failed);
        CHECK(attempt("2001:db8::8") == close_code::auth_failed);
        CHECK(attempt("2001:db8::7") == close_code::auth_rate_limited);
    }
}

TEST_CASE("engine auth: failed password checks are limited per user, whatever the address") {
    auto policy = bob_password_policy();
    engine_config config;
    config.auth_failures_per_minute = 100;
    config.auth_failures_per_user_per_minute = 3;
    engine_fixture f(config);
    mqttws::action_list ignored;
    f.eng.set_security(policy, ignored);
    f.upstream_connected();

    mqttws::connection_id next = 1;
    // What the attempt ends with: a close code, or nullopt when it authenticated.
    auto attempt = [&](const std::string& remote, const std::string& password) {
        f.clear_actions();
        auto c = f.open(next++, remote);
        c.send(R"({"type":"auth","clientId":"bob","password":)" + quoted(password) + "}");
        const auto closes = f.closes();
        return closes.empty() ? std::optional<mqttws::close_code>{} : closes[0].code;
    };
    using mqttws::close_code;
    CHECK_FALSE(attempt("192.0.2.1:1", "hunter2"));  // bob's usual address
    // An attacker rotates addresses: three guesses, then bob's password is not checked at all.
    CHECK(attempt("10.0.0.1:1", "guess1") == close_code::auth_failed);
    CHECK(attempt("10.0.0.2:1", "guess2") == close_code::auth_failed);
    CHECK(attempt("10.0.0.3:1", "guess3") == close_code::auth_failed);
    CHECK(attempt("10.0.0.4:1", "hunter2") == close_code::auth_rate_limited);
    const auto audits = f.of_kind<mqttws::audit_record>();
    REQUIRE_FALSE(audits.empty());
    CHECK(audits.back().detail.find("for user 'bob'") != std::string::npos);
    // bob from where he authenticated before is not locked out.
    CHECK_FALSE(attempt("192.0.2.1:2", "hunter2"));
    // The lock ends by itself (3 per minute: one back after 20 s).
    f.advance(20'000);
    CHECK_FALSE(attempt("10.0.0.5:1", "hunter2"));
}
