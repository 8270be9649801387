// Unit tests for io/action_runner and io/upstream's pass_to_engine: the engine driven through
// the edge's own glue, against a fake broker connection and fake client connections, so that
// what the bridge would write to sockets and to the broker is seen without opening either.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../engine_fixture.hpp"
#include "fake_upstream.hpp"
#include "io/action_runner.hpp"
#include "io/audit_log.hpp"

using namespace mqttws;
using mqttws::test::fake_platform;
using mqttws::test::fake_upstream;
using mqttws::test::json_frame;

namespace {

// The clients' side: frames, pings and closes per connection.
class fake_links final : public client_links {
  public:
    void send(connection_id to, const frame_ptr& frame, bool binary,
              std::string_view head) override {
        sent[to].push_back(json_frame(make_frame(std::string(head) + *frame)));
        calls.push_back("send " + std::to_string(to));
        binaries += binary ? 1 : 0;
    }
    void close(connection_id who, close_code code, std::string_view reason) override {
        closed[who] = {code, std::string(reason)};
    }
    void prefetch(connection_id to) override { calls.push_back("prefetch " + std::to_string(to)); }
    void ping(connection_id who) override { pinged.push_back(who); }
    void pause_reading_from(connection_id who) override { paused.insert(who); }
    void resume_reading_from(connection_id who) override { paused.erase(who); }

    std::map<connection_id, std::vector<json_frame>> sent;
    std::map<connection_id, std::pair<close_code, std::string>> closed;
    std::vector<connection_id> pinged;
    std::set<connection_id> paused;  // not read
    int binaries = 0;
    std::vector<std::string> calls;  // sends and prefetches, in order
};

// The app's wiring, minus the sockets: engine ← events, actions → runner → fakes.
struct edge_fixture {
    edge_fixture()
        : core(engine_config{}, env, std::make_shared<const security_policy>()),
          broker([this](upstream_event&& e) {
              pass_to_engine(e, core, actions);
              runner.run(actions);
          }),
          runner(links, broker, audit, state, env) {}

    void open(connection_id id) {
        core.client_opened(id, "127.0.0.1:5000", {}, actions);
        runner.run(actions);
    }
    void text(connection_id id, std::string_view frame) {
        core.client_text(id, frame, actions);
        runner.run(actions);
    }

    fake_platform env;
    engine core;
    action_list actions;
    fake_links links;
    fake_upstream broker;
    audit_log audit{""};  // no file: records are dropped
    state_dir state{""};  // no directory: nothing kept
    action_runner runner;
};

}  // namespace

TEST_CASE("action_runner: subscribe, the broker's SUBACK, a message and a publish round trip") {
    edge_fixture f;
    f.broker.emit(upstream_connected_event{false});
    // The bridge's own: its presence subscription and its retained status (presence.hpp).
    REQUIRE(f.broker.subscribes.size() == 1);
    CHECK(f.broker.subscribes[0].filter == "devices/+/presence");
    REQUIRE(f.broker.publishes.size() == 1);
    CHECK(f.broker.publishes[0].topic == "mqttws/mqttws-bridge/status");
    CHECK(f.broker.publishes[0].retain);
    f.open(1);
    f.text(1, R"({"type":"auth","clientId":"c1","msgid":"a"})");
    REQUIRE(f.links.sent[1].size() == 1);
    CHECK(f.links.sent[1][0].str("type") == "auth_response");

    f.text(1, R"({"type":"subscribe","topic":"room/+","qos":1,"msgid":"s"})");
    REQUIRE(f.broker.subscribes.size() == 2);
    const subscribe_upstream sub = f.broker.subscribes[1];
    CHECK(sub.filter == "room/+");
    CHECK(sub.qos == 1);
    CHECK(f.links.sent[1].size() == 1);  // the suback waits for the broker's

    f.broker.emit(upstream_subscribed_event{sub.op, 1});
    REQUIRE(f.links.sent[1].size() == 2);
    CHECK(f.links.sent[1][1].str("type") == "suback");
    CHECK(f.links.sent[1][1].json("qos") == "1");

    broker_message m;
    m.topic = "room/1";
    m.payload = R"({"t":21})";
    m.qos = 1;
    m.subscription_ids = {sub.subscription_id};
    f.broker.emit(m);
    REQUIRE(f.links.sent[1].size() == 3);
    CHECK(f.links.sent[1][2].str("type") == "message");
    CHECK(f.links.sent[1][2].str("topic") == "room/1");
    CHECK(f.links.sent[1][2].json("payload") == R"({"t":21})");

    f.text(1, R"({"type":"publish","topic":"room/2","payload":"on","qos":1,"msgid":"p"})");
    REQUIRE(f.broker.publishes.size() == 2);
    CHECK(f.broker.publishes[1].topic == "room/2");
    CHECK(f.broker.publishes[1].payload == "on");
    CHECK(f.links.sent[1].size() == 3);  // nothing before the broker's PUBACK
    f.broker.emit(upstream_published_event{f.broker.publishes[1].op, std::nullopt, {}});
    // The ack, and (MQTT 5: the bridge's subscription has No Local) the publish itself, delivered
    // by the bridge to its subscriber on room/+, who happens to be the publisher.
    REQUIRE(f.links.sent[1].size() == 5);
    int acks = 0, messages = 0;
    for (std::size_t i = 3; i < 5; ++i) {
        const auto& frame = f.links.sent[1][i];
        if (frame.str("type") == "ack") {
            ++acks;
            CHECK(frame.str("status") == "ok");
            CHECK(frame.str("msgid") == "p");
        } else {
            ++messages;
            CHECK(frame.str("type") == "message");
            CHECK(frame.str("topic") == "room/2");
            CHECK(frame.json("payload") == R"("on")");
        }
    }
    CHECK(acks == 1);
    CHECK(messages == 1);
}

TEST_CASE("action_runner: broker loss is told to clients; pings and closes reach the links") {
    edge_fixture f;
    f.broker.emit(upstream_connected_event{false});
    f.open(7);
    f.text(7, R"({"type":"auth","clientId":"c7"})");
    f.text(7, R"({"type":"unsubscribe","topic":"a/b","msgid":"u"})");
    CHECK(f.links.sent[7].back().str("type") == "unsuback");
    f.broker.emit(upstream_lost_event{"gone"});
    CHECK(f.links.sent[7].back().str("type") == "status");
    CHECK(f.links.sent[7].back().str("upstream") == "down");

    // Garbage is answered with an error frame; the connection stays open.
    f.text(7, "{not json");
    CHECK(f.links.sent[7].back().str("type") == "error");
    CHECK(f.links.closed.empty());

    // Silence past the idle timeout: pinged, then closed with 4001 through the link.
    f.env.advance(30'000);
    f.core.tick(f.actions);
    f.runner.run(f.actions);
    CHECK(f.links.pinged == std::vector<connection_id>{7});
    f.env.advance(60'000);
    f.core.tick(f.actions);
    f.runner.run(f.actions);
    REQUIRE(f.links.closed.count(7) == 1);
    CHECK(f.links.closed[7].first == close_code::heartbeat_timeout);
    CHECK(f.actions.empty());  // the runner consumed them
}

TEST_CASE("action_runner: each send's connection is announced to the links 8 actions ahead") {
    edge_fixture f;
    // A fan-out as the engine emits it: sends to connections 1..20, a ping in the middle.
    const auto frame = std::make_shared<const std::string>(R"({"type":"message"})");
    for (connection_id id = 1; id <= 20; ++id) {
        if (id == 12) f.actions.push_back(ping_client{99});
        f.actions.push_back(send_frame{id, frame, false, {}});
    }
    f.runner.run(f.actions);

    // Action k announces the send at k + 8, if that is a send: the ping (action 11) is never
    // announced, the sends at actions 0..7 cannot be, and no send is announced twice.
    std::vector<std::string> prefetched;
    for (const auto& c : f.links.calls)
        if (c.rfind("prefetch ", 0) == 0) prefetched.push_back(c);
    std::vector<std::string> expected;
    for (connection_id id = 9; id <= 20; ++id)
        expected.push_back("prefetch " + std::to_string(id));
    CHECK(prefetched == expected);
    // Each announcement comes before its send, while the sends before it run.
    const auto at = [&](const std::string& c) {
        return std::find(f.links.calls.begin(), f.links.calls.end(), c) - f.links.calls.begin();
    };
    for (connection_id id = 9; id <= 20; ++id) {
        const auto announced = at("prefetch " + std::to_string(id));
        const auto sent = at("send " + std::to_string(id));
        CHECK(announced < sent);
        CHECK(sent - announced > 4);  // not just before it: several sends in between
    }
    CHECK(f.links.sent.size() == 20);
    CHECK(f.links.pinged == std::vector<connection_id>{99});
}
