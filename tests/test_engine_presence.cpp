// Unit tests for presence and last wills (core/presence.hpp) through the engine: device presence
// online and offline with its reason, the bridge's own status, last wills with their delay, and
// what --state-dir carries over a restart.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::close_code;
using mqttws::engine_config;
using mqttws::publish_upstream;
using mqttws::test::broker_msg;
using mqttws::test::engine_fixture;
using mqttws::test::json_frame;
using mqttws::test::quoted;

namespace {

// The publishes to `topic` since the last clear(), parsed.
std::vector<json_frame> published_to(const engine_fixture& f, const std::string& topic) {
    std::vector<json_frame> out;
    for (const publish_upstream& p : f.publishes())
        if (p.topic == topic) out.emplace_back(p.payload);
    return out;
}

std::vector<publish_upstream> raw_publishes_to(const engine_fixture& f, const std::string& topic) {
    std::vector<publish_upstream> out;
    for (const publish_upstream& p : f.publishes())
        if (p.topic == topic) out.push_back(p);
    return out;
}

engine_fixture& connected(engine_fixture& f) {
    f.upstream_connected();
    f.clear();
    return f;
}

const std::string presence_a = "devices/dev-a/presence";

}  // namespace

TEST_CASE("engine presence: a device's presence is online while its session lives") {
    engine_fixture f(engine_config{}, engine_fixture::with_presence);
    connected(f);
    auto d = f.device(1, "dev-a");
    {
        const auto p = raw_publishes_to(f, presence_a);
        REQUIRE(p.size() == 1);
        CHECK(p[0].retain);
        CHECK(p[0].qos == 1);
        const json_frame online(p[0].payload);
        CHECK(online.json("online") == "true");
        CHECK(online.str("bridge") == "mqttws-bridge");
        CHECK(online.num("since") == f.env.wall);
    }
    REQUIRE(f.states().size() == 1);
    CHECK(f.states()[0].file == "presence.jsonl");
    CHECK(f.states()[0].text == "+dev-a");
    f.clear();

    SUBCASE("a clean close: offline, closed") {
        d.close();
        const auto p = published_to(f, presence_a);
        REQUIRE(p.size() == 1);
        CHECK(p[0].json("online") == "false");
        CHECK(p[0].str("reason") == "closed");
        REQUIRE(f.states().size() == 1);
        CHECK(f.states()[0].text == "-dev-a");
    }
    SUBCASE("a drop: still online during the resume window, then offline, timeout") {
        f.client_closed(1, /*clean=*/false);
        CHECK(published_to(f, presence_a).empty());
        f.advance(119'000);
        f.tick();
        CHECK(published_to(f, presence_a).empty());
        f.advance(1'001);
        f.tick();
        const auto p = published_to(f, presence_a);
        REQUIRE(p.size() == 1);
        CHECK(p[0].str("reason") == "timeout");
    }
    SUBCASE("a second session of the same device: offline when the last one ends") {
        auto again = f.device(2, "dev-a");
        CHECK(published_to(f, presence_a).empty());
        d.close();
        CHECK(published_to(f, presence_a).empty());
        again.close();
        REQUIRE(published_to(f, presence_a).size() == 1);
    }
}

TEST_CASE(
    "engine presence: an engine shard tells the others of a device's first session and of its "
    "last one's end") {
    engine_config config;
    SUBCASE("behind the hub") {
        config.behind_hub = true;
    }
    SUBCASE("one engine: nobody to tell") {}
    engine_fixture f(config, engine_fixture::with_presence);
    connected(f);
    auto first = f.device(1, "dev-a");
    auto second = f.device(2, "dev-a");
    f.auth(3, "browser");
    first.close();
    second.close();
    const auto told = f.of_kind<mqttws::device_presence>();
    if (!config.behind_hub) {
        CHECK(told.empty());
        return;
    }
    REQUIRE(told.size() == 2);
    CHECK(told[0].device == "dev-a");
    CHECK(told[0].online);
    CHECK(told[1].device == "dev-a");
    CHECK_FALSE(told[1].online);
}

TEST_CASE("engine presence: clients that are not devices have no presence; it can be off") {
    engine_fixture f(engine_config{}, engine_fixture::with_presence);
    connected(f);
    f.auth(1, "browser");
    CHECK(f.publishes().empty());

    engine_config off;
    off.devices.presence_topic.clear();
    engine_fixture g(off, engine_fixture::with_presence);
    connected(g);
    g.device(1, "dev-a");
    CHECK(g.publishes().empty());
}

TEST_CASE(
    "engine presence: the bridge's status says since when this run is up, not the broker "
    "connection") {
    // A device may connect before the broker connection is up, and the broker connection may be
    // lost and made again: neither may make the status newer than a device's presence, or a
    // consumer would take the device for one a previous run left behind.
    engine_config config;
    config.devices.bridge_id = "edge-7";
    engine_fixture f(config, engine_fixture::with_presence);
    const std::int64_t started = f.env.wall;
    f.advance(5'000);
    f.device(1, "dev-a");  // before the broker connection
    f.advance(2'000);
    f.upstream_connected();
    const auto status = published_to(f, "mqttws/edge-7/status");
    REQUIRE(status.size() == 1);
    CHECK(status[0].num("since") == started);
    const auto device = published_to(f, presence_a);
    REQUIRE(device.size() == 1);
    CHECK(device[0].num("since") >= status[0].num("since"));
    f.clear();
    f.upstream_lost();
    f.advance(10'000);
    f.upstream_connected();
    const auto again = published_to(f, "mqttws/edge-7/status");
    REQUIRE(again.size() == 1);
    CHECK(again[0].num("since") == started);
}

TEST_CASE("engine presence: the bridge's status on connect and on shutdown") {
    engine_config config;
    config.devices.bridge_id = "edge-7";
    engine_fixture f(config, engine_fixture::with_presence);
    f.upstream_connected();
    {
        const auto p = raw_publishes_to(f, "mqttws/edge-7/status");
        REQUIRE(p.size() == 1);
        CHECK(p[0].retain);
        CHECK(json_frame(p[0].payload).json("online") == "true");
        // And the bridge hears every device's presence through its own subscription.
        REQUIRE(f.subscribes().size() == 1);
        CHECK(f.subscribes()[0].filter == "devices/+/presence");
    }
    f.device(1, "dev-a");
    f.clear();
    f.shutdown();
    const auto device = published_to(f, presence_a);
    REQUIRE(device.size() == 1);
    CHECK(device[0].str("reason") == "bridge-stopped");
    CHECK(device[0].str("bridge") == "edge-7");
    const auto bridge = published_to(f, "mqttws/edge-7/status");
    REQUIRE(bridge.size() == 1);
    CHECK(bridge[0].json("online") == "false");
    CHECK(bridge[0].str("reason") == "stopped");
}

TEST_CASE("engine presence: devices a crashed run left online are marked offline (state dir)") {
    engine_fixture f(engine_config{}, engine_fixture::with_presence);
    mqttws::action_list out;
    f.eng.restore_state("presence.jsonl", {"+dev-a", "+dev-b", "-dev-b", "+dev-c", "junk"}, out);
    const auto records = mqttws::test::actions_of<mqttws::state_record>(out);
    REQUIRE(records.size() == 1);
    CHECK(records[0].replace);
    CHECK((records[0].text == "+dev-a\n+dev-c\n" || records[0].text == "+dev-c\n+dev-a\n"));

    f.device(3, "dev-c");  // back before the broker connection: not lost
    f.clear();
    f.upstream_connected();
    const auto lost = published_to(f, presence_a);
    REQUIRE(lost.size() == 1);
    CHECK(lost[0].json("online") == "false");
    CHECK(lost[0].str("reason") == "bridge-lost");
    CHECK(published_to(f, "devices/dev-b/presence").empty());
    const auto back = published_to(f, "devices/dev-c/presence");  // its own, sent on connecting
    REQUIRE(back.size() == 1);
    CHECK(back[0].json("online") == "true");
    bool forgotten = false;
    for (const auto& r : f.states())
        forgotten = forgotten || r.text == "-dev-a";
    CHECK(forgotten);
}

TEST_CASE("engine will: published after a drop once its delay passes, unless resumed") {
    engine_fixture f;
    connected(f);
    auto c = f.client(1);
    c.send(R"({"type":"auth","clientId":"w1","msgid":"a","will":{"topic":"alerts/w1",)"
           R"("payload":{"gone":true},"qos":1,"retain":true,"delayMs":5000}})");
    const std::string token = c.take().at(0).str("session");
    REQUIRE_FALSE(token.empty());
    f.clear();
    f.client_closed(1, /*clean=*/false);
    f.advance(4'999);
    f.tick();
    CHECK(raw_publishes_to(f, "alerts/w1").empty());

    SUBCASE("the delay passes") {
        f.advance(1);
        f.tick();
        const auto p = raw_publishes_to(f, "alerts/w1");
        REQUIRE(p.size() == 1);
        CHECK(p[0].payload == R"({"gone":true})");
        CHECK(p[0].qos == 1);
        CHECK(p[0].retain);
        CHECK(f.stats().wills_published == 1);
        // Once: not again when the session ends.
        f.advance(200'000);
        f.tick();
        CHECK(raw_publishes_to(f, "alerts/w1").size() == 1);
    }
    SUBCASE("a resume within the delay cancels it") {
        auto again = f.client(2);
        again.send(R"({"type":"auth","clientId":"w1","session":)" + quoted(token) + "}");
        f.advance(10'000);
        f.tick();
        CHECK(raw_publishes_to(f, "alerts/w1").empty());
        again.close();  // and a clean close drops it
        f.advance(200'000);
        f.tick();
        CHECK(raw_publishes_to(f, "alerts/w1").empty());
    }
}

TEST_CASE("engine will: a clean close drops it; the bridge's closes and session ends fire it") {
    engine_fixture f;
    connected(f);
    const auto auth_with_will = [&](mqttws::connection_id id, const std::string& delay) {
        auto c = f.client(id);
        c.send(R"({"type":"auth","clientId":"w)" + std::to_string(id) +
               R"(","resume":false,"will":{"topic":"alerts/w)" + std::to_string(id) +
               R"(","payload":"bye","delayMs":)" + delay + "}}");
        c.take();
        return c;
    };
    auth_with_will(1, "0").close();
    CHECK(raw_publishes_to(f, "alerts/w1").empty());

    // No resume possible: the session ends with the drop, and the will goes out at once,
    // whatever its delay (MQTT: the session ended first).
    auth_with_will(2, "60000");
    f.client_closed(2, /*clean=*/false);
    CHECK(raw_publishes_to(f, "alerts/w2").size() == 1);

    // A half-open connection: the bridge closes it with 4001, which fires the will.
    auth_with_will(3, "0");
    f.advance(90'000);
    f.tick();
    REQUIRE(f.closes().size() == 1);
    CHECK(f.closes()[0].code == close_code::heartbeat_timeout);
    mqttws::action_list out;
    f.eng.client_closed(3, 4001, /*by_peer=*/false, out);
    CHECK(mqttws::test::actions_of<publish_upstream>(out).size() == 1);
}

TEST_CASE("engine will: a will the ACL does not allow refuses the authentication") {
    engine_fixture f;
    connected(f);
    mqttws::security_policy policy;
    policy.rules = std::get<mqttws::acl>(mqttws::acl::parse("pattern readwrite alerts/%c\n"));
    mqttws::action_list ignored;
    f.eng.set_security(std::make_shared<const mqttws::security_policy>(policy), ignored);
    auto c = f.client(1);
    c.send(R"({"type":"auth","clientId":"w","msgid":"a","will":{"topic":"secret/x"}})");
    const auto got = c.take();
    REQUIRE(got.size() == 1);
    CHECK(got[0].str("type") == "error");
    CHECK(got[0].str("code") == "forbidden");
    CHECK(got[0].str("msgid") == "a");
    REQUIRE(f.closes().size() == 1);
    CHECK(f.closes()[0].code == close_code::auth_failed);

    auto ok = f.client(2);
    ok.send(R"({"type":"auth","clientId":"w2","msgid":"b","will":{"topic":"alerts/w2"}})");
    const auto answer = ok.take().at(0);
    INFO(answer.text());
    CHECK(answer.str("type") == "auth_response");
}

TEST_CASE("engine presence: a change is written to the state dir before it is published") {
    // Whoever sees the presence change may see the bridge crash next: the next run must find the
    // change on disk, or it would mark a device that had closed as lost.
    engine_fixture f(engine_config{}, engine_fixture::with_presence);
    connected(f);
    f.device(1, "dev-a");
    const auto order_of = [&](const mqttws::action_list& out, char sign) {
        std::ptrdiff_t record = -1, publish = -1;
        for (std::size_t i = 0; i < out.size(); ++i) {
            if (const auto* r = std::get_if<mqttws::state_record>(&out[i]);
                r != nullptr && r->text == std::string(1, sign) + "dev-a")
                record = static_cast<std::ptrdiff_t>(i);
            if (const auto* p = std::get_if<publish_upstream>(&out[i]);
                p != nullptr && p->topic == presence_a && publish < 0)
                publish = static_cast<std::ptrdiff_t>(i);
        }
        REQUIRE(record >= 0);
        REQUIRE(publish >= 0);
        return record < publish;
    };
    f.clear_actions();
    CHECK(order_of(f.client_closed(1), '-'));
    f.clear_actions();
    f.device(2, "dev-a");
    CHECK(order_of(f.actions(), '+'));
}
